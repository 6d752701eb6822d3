"""Segments of an event's audience, as an organiser chooses them: by role, municipality, tag, language, and
attendance at an earlier event of the series. An empty segment is the whole audience. Which recipients a
segment selects is SQL, in invites.db.segments (segment_conditions)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from invites.domain.errors import InputError
from invites.domain.reference import LANGUAGES, Municipalities, load_municipalities, match_role, roles


@dataclass(frozen=True)
class Segment:
    roles: tuple[str, ...] = ()
    municipalities: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    attended_previous: bool = False

    @classmethod
    def parse(
        cls,
        roles: list[str] | tuple[str, ...] = (),
        municipalities: list[str] | tuple[str, ...] = (),
        tags: list[str] | tuple[str, ...] = (),
        languages: list[str] | tuple[str, ...] = (),
        attended_previous: bool = False,
        places: Municipalities | None = None,
    ) -> Segment:
        """A segment from what an organiser typed: role names or keys, municipality names or CBS codes (of
        `places`, the Runtime's list; the bundled one when None)."""
        places = places or load_municipalities()
        role_keys = []
        for text in roles:
            key = match_role(text)
            if key is None:
                raise InputError(f"unknown role {text!r}; known: {', '.join(sorted(_role_keys()))}")
            role_keys.append(key)
        codes = []
        for text in municipalities:
            code = places.match(text)
            if code is None:
                raise InputError(f"unknown municipality {text!r}")
            codes.append(code)
        for language in languages:
            if language not in LANGUAGES:
                raise InputError(f"unknown language {language!r}; one of nl, en")
        return cls(tuple(role_keys), tuple(codes), tuple(tags), tuple(languages), attended_previous)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Segment:
        return cls(
            roles=tuple(data.get("roles", ())),
            municipalities=tuple(data.get("municipalities", ())),
            tags=tuple(data.get("tags", ())),
            languages=tuple(data.get("languages", ())),
            attended_previous=bool(data.get("attended_previous", False)),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()
        }


def _role_keys() -> set[str]:
    return set(roles())
