"""Reference data: the audience roles and the municipalities, with the lookups an import needs."""

from __future__ import annotations

import csv
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

DATA = Path(__file__).parent / "data"


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


@cache
def municipalities(path: Path = DATA / "utrecht-municipalities.csv") -> dict[str, Municipality]:
    with path.open(encoding="utf-8", newline="") as handle:
        return {
            row["cbs_code"].upper(): Municipality(row["cbs_code"].upper(), row["name"], row["province"])
            for row in csv.DictReader(handle)
        }


PREFIXES = ("gemeente ", "gem. ", "gem ")


@cache
def _municipality_index(path: Path = DATA / "utrecht-municipalities.csv") -> dict[str, str]:
    return {fold(m.name): m.code for m in municipalities(path).values()}


@lru_cache(maxsize=4096)
def match_municipality(text: str, path: Path = DATA / "utrecht-municipalities.csv") -> str | None:
    """The CBS code for a municipality written by name ("gem. De Bilt") or code ("GM0344"), else None."""
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
