"""Reading recipient lists: columns recognised in Dutch and English, rows checked and normalised.

Pure: bytes in, rows and rejections out. Storing them is `invites.imports`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from email_validator import EmailNotValidError, validate_email

from invites.errors import InputError
from invites.reference import fold, match_municipality, match_role

# The recognised column names, folded; anything else is kept as an attribute for templates.
COLUMNS: dict[str, tuple[str, ...]] = {
    "email": (
        "email",
        "e-mail",
        "e-mailadres",
        "emailadres",
        "mail",
        "email address",
        "e-mail address",
        "mailadres",
    ),
    "name": ("naam", "name", "volledige naam", "full name", "weergavenaam", "display name"),
    "first_name": ("voornaam", "first name", "firstname", "given name", "roepnaam"),
    "name_prefix": ("tussenvoegsel", "tussenvoegsels", "voorvoegsel", "prefix", "name prefix"),
    "last_name": ("achternaam", "last name", "lastname", "surname", "family name"),
    "role": ("functie", "rol", "role", "function", "position", "job title", "functietitel"),
    "municipality": ("gemeente", "municipality", "cbs code", "gemeentecode", "cbs", "gemeentenaam"),
    "organisation": ("organisatie", "organisation", "organization", "orgaan", "company", "bedrijf"),
    "language": ("taal", "language", "lang"),
    "salutation": ("aanhef", "salutation", "greeting"),
    "tags": ("tags", "tag", "labels", "label"),
}
_HEADER_INDEX = {fold(alias).replace(" ", ""): key for key, aliases in COLUMNS.items() for alias in aliases}
DELIMITERS = ",;\t"


@dataclass(frozen=True)
class Rejection:
    line: int
    column: str
    reason: str


@dataclass(frozen=True)
class Person:
    line: int
    email: str
    email_key: str
    first_name: str = ""
    name_prefix: str = ""
    last_name: str = ""
    display_name: str = ""
    salutation: str = ""
    role_key: str | None = None
    role_label: str = ""
    municipality_code: str | None = None
    organisation: str = ""
    language: str = "nl"
    tags: tuple[str, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)


def header_key(name: str) -> str | None:
    return _HEADER_INDEX.get(fold(name).replace(" ", "").replace("_", ""))


def decode(data: bytes) -> str:
    """UTF-8 (with or without a BOM), else Windows-1252, as a Dutch Excel saves it."""
    if not data.strip():
        raise InputError("the file is empty")
    if b"\x00" in data[:4096]:
        raise InputError("the file is binary, not a CSV text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def sniff_delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def read_csv(data: bytes) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header and an iterator of (line number, cells); line numbers count physical lines from 1."""
    text = decode(data)
    delimiter = sniff_delimiter(text.split("\n", 1)[0])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError("the file is empty") from None

    def rows() -> Iterator[tuple[int, list[str]]]:
        start = reader.line_num + 1
        for cells in reader:
            if any(c.strip() for c in cells):
                yield start, cells
            start = reader.line_num + 1

    return header, rows()


def parse_people(data: bytes) -> tuple[list[Person], list[Rejection], list[str]]:
    """Every usable person in a CSV list, every row that could not be used, and warnings."""
    header, rows = read_csv(data)
    keys = [header_key(name) for name in header]
    if "email" not in keys:
        raise InputError(f"no e-mail column: the header has {', '.join(repr(h) for h in header)}")
    people: list[Person] = []
    rejected: list[Rejection] = []
    warnings: list[str] = []
    for line, cells in rows:
        if len(cells) > len(header):
            rejected.append(Rejection(line, "", f"{len(cells)} fields, but the header has {len(header)}"))
            continue
        known: dict[str, str] = {}
        attributes: dict[str, str] = {}
        for name, key, value in zip(header, keys, cells, strict=False):
            if key:
                # A line break inside a cell (Alt+Enter in Excel) is only layout: it becomes a space.
                known[key] = " ".join(value.split())
            elif name.strip() and value.strip():
                attributes[name.strip()] = value.strip()
        person = _person(line, header[keys.index("email")], known, attributes, rejected, warnings)
        if person:
            people.append(person)
    return people, rejected, warnings


def _person(
    line: int,
    email_column: str,
    cells: dict[str, str],
    attributes: dict[str, str],
    rejected: list[Rejection],
    warnings: list[str],
) -> Person | None:
    address = cells.get("email", "")
    if not address:
        rejected.append(Rejection(line, email_column, "no e-mail address"))
        return None
    try:
        valid = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        rejected.append(Rejection(line, email_column, f"{address!r} is not a valid address: {exc}"))
        return None
    role_text = cells.get("role", "")
    role_key = match_role(role_text) if role_text else None
    if role_text and role_key is None:
        warnings.append(f"line {line}: unknown role {role_text!r}")
    place = cells.get("municipality", "")
    code = match_municipality(place) if place else None
    if place and code is None:
        warnings.append(f"line {line}: unknown municipality {place!r}")
    if not place and cells.get("organisation"):
        code = match_municipality(cells["organisation"])
    language = (cells.get("language") or "nl").lower()[:2]
    if language not in ("nl", "en"):
        warnings.append(f"line {line}: unknown language {cells['language']!r}, using nl")
        language = "nl"
    first, prefix, last = (
        cells.get("first_name", ""),
        cells.get("name_prefix", ""),
        cells.get("last_name", ""),
    )
    display = cells.get("name") or " ".join(part for part in (first, prefix, last) if part)
    return Person(
        line=line,
        email=valid.normalized,
        email_key=valid.normalized.casefold(),
        first_name=first,
        name_prefix=prefix,
        last_name=last,
        display_name=display,
        salutation=cells.get("salutation", ""),
        role_key=role_key,
        role_label=role_text,
        municipality_code=code,
        organisation=cells.get("organisation", ""),
        language=language,
        tags=tuple(t.strip() for t in cells.get("tags", "").replace(";", ",").split(",") if t.strip()),
        attributes=attributes,
    )


def as_json(rejected: list[Rejection]) -> list[dict[str, Any]]:
    return [{"line": r.line, "column": r.column, "reason": r.reason} for r in rejected]
