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
_active = {"municipalities": DEFAULT_MUNICIPALITIES}


def use_municipalities(path: Path | None) -> None:
    """Load another reference list of municipalities (same columns as the bundled Utrecht one)."""
    chosen = path or DEFAULT_MUNICIPALITIES
    if not chosen.is_file():
        raise FileNotFoundError(f"INVITES_MUNICIPALITIES_FILE {chosen} does not exist")
    _active["municipalities"] = chosen


def _date(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


@cache
def _load_municipalities(path: Path) -> dict[str, Municipality]:
    with path.open(encoding="utf-8", newline="") as handle:
        return {
            row["cbs_code"].strip().upper(): Municipality(
                row["cbs_code"].strip().upper(),
                row["name"].strip(),
                row.get("province", "") or "",
                _date(row.get("valid_from")),
                _date(row.get("valid_until")),
            )
            for row in csv.DictReader(handle)
        }


def municipalities(path: Path | None = None) -> dict[str, Municipality]:
    """The municipalities of the active reference list (or of `path`), by CBS code."""
    return _load_municipalities(path or _active["municipalities"])


PREFIXES = ("gemeente ", "gem. ", "gem ")


@cache
def _municipality_index(path: Path) -> dict[str, str]:
    return {fold(m.name): m.code for m in municipalities(path).values()}


def match_municipality(text: str, path: Path | None = None) -> str | None:
    """The CBS code for a municipality written by name ("gem. De Bilt") or code ("GM0344"), else None."""
    return _match_municipality(text, path or _active["municipalities"])


@lru_cache(maxsize=4096)
def _match_municipality(text: str, path: Path) -> str | None:
    folded = fold(text)
    if not folded:
        return None
    code = folded.upper()
    if code.startswith("GM") and code in municipalities(path):
        return code
    for prefix in PREFIXES:
        if folded.startswith(prefix):
            folded = folded[len(prefix) :].strip()
            break
    return _municipality_index(path).get(folded)


def municipality_name(code: str | None) -> str:
    if not code:
        return ""
    found = municipalities().get(code)
    return found.name if found else code
