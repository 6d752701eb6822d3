"""Segments of an event's audience, and the coverage matrix of municipality × role.

A segment filters by role, municipality, tag, language, and attendance at an earlier event of the series.
An empty segment is the whole audience.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import ColumnElement, String, and_, cast, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from invites.errors import InputError
from invites.models import Answer, Event, Invitation, Recipient
from invites.reference import LANGUAGES, match_municipality, match_role, municipalities, roles

UNKNOWN = "unknown"


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
    ) -> Segment:
        """A segment from what an organiser typed: role names or keys, municipality names or CBS codes."""
        role_keys = []
        for text in roles:
            key = match_role(text)
            if key is None:
                raise InputError(f"unknown role {text!r}; known: {', '.join(sorted(_role_keys()))}")
            role_keys.append(key)
        codes = []
        for text in municipalities:
            code = match_municipality(text)
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

    def conditions(self, event: Event) -> list[ColumnElement[bool]]:
        """SQL conditions on Recipient (joined to the event's Invitation) that select this segment.

        A registration still waiting for its double opt-in is in no segment.
        """
        found: list[ColumnElement[bool]] = [Invitation.pending.is_(False)]
        if self.roles:
            found.append(Recipient.role_key.in_(self.roles))
        if self.municipalities:
            found.append(Recipient.municipality_code.in_(self.municipalities))
        if self.languages:
            found.append(Recipient.language.in_(self.languages))
        if self.tags:
            # Tags are a JSON list; its text form holds each tag quoted, on SQLite and PostgreSQL alike.
            text = cast(Recipient.tags, String)
            found.append(or_(*(text.like(f'%"{_like_escape(tag)}"%', escape="\\") for tag in self.tags)))
        if self.attended_previous:
            earlier = aliased(Event)
            other = aliased(Invitation)
            found.append(
                exists(
                    select(other.id)
                    .join(earlier, earlier.id == other.event_id)
                    .where(
                        other.recipient_id == Recipient.id,
                        other.answer == Answer.ACCEPTED,
                        earlier.id != event.id,
                        earlier.starts_at < event.starts_at,
                        or_(
                            and_(earlier.series_id.is_not(None), earlier.series_id == event.series_id),
                            earlier.id == event.predecessor_id,
                        ),
                    )
                )
            )
        return found


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _role_keys() -> set[str]:
    return set(roles())


def coverage(session: Session, event: Event, segment: Segment | None = None) -> dict[str, Any]:
    """How many recipients per municipality × role are invited, have accepted and have declined.

    Every municipality of the reference list that existed on the event's date gets a row, so the ones nobody
    is coming from show up as zeros.
    """
    segment = segment or Segment()
    rows = session.execute(
        select(Recipient.municipality_code, Recipient.role_key, Invitation.answer, func.count())
        .join(Invitation, Invitation.recipient_id == Recipient.id)
        .where(Invitation.event_id == event.id, *segment.conditions(event))
        .group_by(Recipient.municipality_code, Recipient.role_key, Invitation.answer)
    ).all()
    role_order = [key for key in roles() if key != "other"] + ["other", UNKNOWN]
    day = event.starts_at.date()
    reference = {m.code: m.name for m in municipalities().values() if m.exists_on(day)}
    matrix: dict[str, dict[str, dict[str, int]]] = {}
    for code, role, answer, count in rows:
        cell = matrix.setdefault(code or UNKNOWN, {}).setdefault(role or UNKNOWN, _empty())
        cell["invited"] += count
        if answer in (Answer.ACCEPTED, Answer.DECLINED, Answer.TENTATIVE):
            cell[answer.value] += count
    codes = list(reference) + sorted(code for code in matrix if code not in reference and code != UNKNOWN)
    if UNKNOWN in matrix:
        codes.append(UNKNOWN)
    table: list[dict[str, Any]] = []
    for code in codes:
        cells = matrix.get(code, {})
        table.append(
            {
                "code": code,
                "name": _place_name(code),
                "roles": {role: cells.get(role, _empty()) for role in role_order},
                "total": _sum(cells.values()),
            }
        )
    totals = {role: _sum(row["roles"][role] for row in table) for role in role_order}
    return {
        "event": event.slug,
        "segment": segment.as_dict(),
        "roles": role_order,
        "municipalities": table,
        "totals": {**totals, "all": _sum(totals.values())},
        "nobody_accepted": [
            row["name"] for row in table if row["code"] != UNKNOWN and not row["total"]["accepted"]
        ],
    }


def _place_name(code: str) -> str:
    if code == UNKNOWN:
        return "(onbekend)"
    known = municipalities().get(code)
    return known.name if known else code


def _empty() -> dict[str, int]:
    return {"invited": 0, "accepted": 0, "tentative": 0, "declined": 0}


def _sum(cells: Any) -> dict[str, int]:
    total = _empty()
    for cell in cells:
        for key in total:
            total[key] += cell[key]
    return total
