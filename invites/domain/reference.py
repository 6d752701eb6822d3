"""Reference data: the audience roles and the municipalities, with the lookups an import needs."""

from __future__ import annotations

import csv
import unicodedata
from dataclasses import dataclass
from datetime import date
from functools import cache, lru_cache
from pathlib import Path

DATA = Path(__file__).parent / "data"
# The languages everything is written in: messages, pages, and what a recipient or an event may choose.
LANGUAGES = ("nl", "en")


@dataclass(frozen=True)
class Role:
    key: str
    nl_singular: str
    nl_plural: str
    en: str
    aliases: tuple[str, ...]
    salutation_nl: str
    salutation_en: str

    def label(self, language: str) -> str:
        return self.en if language == "en" else self.nl_singular

    def salutation(self, language: str) -> str:
        return self.salutation_en if language == "en" else self.salutation_nl


@dataclass(frozen=True)
class Municipality:
    code: str
    name: str
    province: str
    valid_from: date | None = None
    valid_until: date | None = None

    def exists_on(self, day: date) -> bool:
        """Municipalities merge: Vianen ended on 31 December 2018, Vijfheerenlanden began the next day."""
        return (self.valid_from is None or self.valid_from <= day) and (
            self.valid_until is None or day <= self.valid_until
        )


def fold(text: str) -> str:
    """Case-, accent- and spacing-blind form of a name, for matching only (never for display)."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.casefold().replace("-", " ").split())


@cache
def roles() -> dict[str, Role]:
    with (DATA / "roles.csv").open(encoding="utf-8", newline="") as handle:
        return {
            row["key"]: Role(
                key=row["key"],
                nl_singular=row["nl_singular"],
                nl_plural=row["nl_plural"],
                en=row["en"],
                aliases=tuple(a.strip() for a in row["aliases"].split(";") if a.strip()),
                salutation_nl=row["salutation_nl_without_name"],
                salutation_en=row["salutation_en_without_name"],
            )
            for row in csv.DictReader(handle)
        }


@cache
def _role_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for role in roles().values():
        for name in (role.key, role.nl_singular, role.nl_plural, role.en, *role.aliases):
            index.setdefault(fold(name), role.key)
    return index


@lru_cache(maxsize=4096)
def match_role(text: str) -> str | None:
    """The canonical role key for a role as written in a list, or None when unknown."""
    return _role_index().get(fold(text))


DEFAULT_MUNICIPALITIES = DATA / "utrecht-municipalities.csv"
PREFIXES = ("gemeente ", "gem. ", "gem ")


class Municipalities:
    """A reference list of municipalities by CBS code (the bundled Utrecht one, or INVITES_MUNICIPALITIES_FILE
    with the same columns), with the lookups an import needs. The Runtime holds the configured one
    (Runtime.municipalities) and passes it down; `load_municipalities()` is the bundled one."""

    def __init__(self, by_code: dict[str, Municipality]) -> None:
        self.by_code = by_code
        self._index = {fold(m.name): m.code for m in by_code.values()}
        self._matched: dict[str, str | None] = {}

    def __contains__(self, code: object) -> bool:
        return code in self.by_code

    def __len__(self) -> int:
        return len(self.by_code)

    def get(self, code: str) -> Municipality | None:
        return self.by_code.get(code)

    def values(self) -> list[Municipality]:
        return list(self.by_code.values())

    def existing_on(self, day: date) -> list[Municipality]:
        return [m for m in self.by_code.values() if m.exists_on(day)]

    def name(self, code: str | None) -> str:
        """The municipality's name; an unknown code as it is, and nothing for none."""
        if not code:
            return ""
        found = self.by_code.get(code)
        return found.name if found else code

    def match(self, text: str) -> str | None:
        """The CBS code for a municipality written by name ("gem. De Bilt") or code ("GM0344"), else None."""
        if text not in self._matched:
            if len(self._matched) > 4096:  # a list repeats its places; a bound keeps odd ones from piling up
                self._matched.clear()
            self._matched[text] = self._match(text)
        return self._matched[text]

    def _match(self, text: str) -> str | None:
        folded = fold(text)
        if not folded:
            return None
        code = folded.upper()
        if code.startswith("GM") and code in self.by_code:
            return code
        for prefix in PREFIXES:
            if folded.startswith(prefix):
                folded = folded[len(prefix) :].strip()
                break
        return self._index.get(folded)


def _date(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


@cache
def load_municipalities(path: Path | None = None) -> Municipalities:
    """The reference list in `path` (the bundled Utrecht one when None), read once per file."""
    chosen = path or DEFAULT_MUNICIPALITIES
    if not chosen.is_file():
        raise FileNotFoundError(f"INVITES_MUNICIPALITIES_FILE {chosen} does not exist")
    with chosen.open(encoding="utf-8", newline="") as handle:
        return Municipalities(
            {
                row["cbs_code"].strip().upper(): Municipality(
                    row["cbs_code"].strip().upper(),
                    row["name"].strip(),
                    row.get("province", "") or "",
                    _date(row.get("valid_from")),
                    _date(row.get("valid_until")),
                )
                for row in csv.DictReader(handle)
            }
        )
