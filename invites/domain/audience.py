"""Reading recipient lists as organisers have them: CSV in any common dialect, or Excel.

Pure apart from reading the stream it is given: rows go in, people and rejections come out, one at a time,
so a large file is never held in memory whole. Storing them is `invites.services.imports`.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from pathlib import PurePath
from typing import IO, Any

from charset_normalizer import from_bytes
from email_validator import EmailNotValidError, ValidatedEmail, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES
from email_validator.syntax import (
    validate_email_domain_name,
    validate_email_length,
    validate_email_local_part,
)

from invites.domain.errors import InputError
from invites.domain.reference import LANGUAGES, fold, load_municipalities, match_role

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
        "e-mail adres",
    ),
    "name": ("naam", "name", "volledige naam", "full name", "weergavenaam", "display name"),
    "first_name": ("voornaam", "first name", "firstname", "given name", "roepnaam", "voorletters"),
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
SAMPLE_BYTES = 256 * 1024
CSV_SUFFIXES = {".csv", ".txt", ".tsv", ""}
EXCEL_SUFFIXES = {".xlsx", ".xlsm"}
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# A cell that a spreadsheet would run as a formula: never a name (OWASP, CSV injection).
FORMULA_START = "="


# A plain ASCII address: no display name, quotes, comments or brackets. Most lists hold nothing else.
PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")


@lru_cache(maxsize=65536)
def _domain(domain: str) -> str:
    # Domains repeat a lot in a list (every council member of a municipality), and checking one is the
    # costly half of checking an address.
    return str(validate_email_domain_name(domain)["domain"])


def check_address(address: str) -> str:
    """The address normalised, exactly as email-validator's validate_email (no DNS) makes it; raises
    EmailNotValidError with its reason. Plain ASCII addresses take a faster path through email-validator's
    own checks, with the domain check cached."""
    if not PLAIN_ADDRESS.fullmatch(address):
        return validate_email(address, check_deliverability=False).normalized
    local, domain = address.rsplit("@", 1)
    info = validate_email_local_part(local)
    checked = ValidatedEmail()
    checked.original = address
    checked.local_part = info["local_part"]
    # The plain pattern admits only ASCII, so the local part has an ASCII form.
    ascii_local = str(info["ascii_local_part"])
    checked.ascii_local_part = ascii_local
    if ascii_local.lower() in CASE_INSENSITIVE_MAILBOX_NAMES:
        checked.local_part = checked.ascii_local_part = ascii_local.lower()
    checked.domain = checked.ascii_domain = _domain(domain)
    checked.normalized = checked.ascii_email = f"{checked.local_part}@{checked.domain}"
    validate_email_length(checked)
    return checked.normalized


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


@dataclass
class Table:
    """An opened list: its header, and its rows as (line number, cells), read lazily."""

    header: list[str]
    rows: Iterator[tuple[int, list[str]]]
    kind: str


def header_key(name: str) -> str | None:
    return _HEADER_INDEX.get(fold(name).replace(" ", "").replace("_", ""))


def detect_encoding(sample: bytes) -> str:
    """UTF-8 (with or without a BOM) when the bytes are UTF-8, else what charset-normalizer finds.

    A Dutch Excel saves "CSV (gescheiden door lijstscheidingsteken)" in Windows-1252.
    """
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in sample:
        raise InputError("the file is binary, not a CSV text file")
    try:
        # The sample may end inside a character: only a complete tail may fail.
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    best = from_bytes(sample).best()
    if best is None:
        raise InputError("the file is not text in any known encoding")
    # Latin-1 and Windows-1252 are told apart by bytes 0x80-0x9F only; the superset reads both.
    return "cp1252" if best.encoding in ("latin_1", "iso8859_15", "cp1252") else best.encoding


def sniff_delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def open_table(
    stream: IO[bytes], filename: str, size: int, max_bytes: int, sheet: str | None = None
) -> Table:
    """Open an uploaded list, checking its size, type and encoding before any row is read."""
    if size > max_bytes:
        raise InputError(f"the file is {size:,} bytes, over the limit of {max_bytes:,} bytes")
    sample = stream.read(SAMPLE_BYTES)
    stream.seek(0)
    if not sample.strip():
        raise InputError("the file is empty")
    suffix = PurePath(filename).suffix.lower()
    if sample.startswith(OLE_MAGIC) or suffix == ".xls":
        raise InputError("this is an old Excel .xls workbook: save it as .xlsx or as CSV")
    if sample.startswith(ZIP_MAGIC):
        if suffix not in EXCEL_SUFFIXES:
            raise InputError(
                f"this is an Excel workbook, but its name ends in {suffix or 'nothing'!r}: use .xlsx"
            )
        return _excel_table(stream, sheet)
    if suffix in EXCEL_SUFFIXES:
        raise InputError(f"the name ends in {suffix!r}, but the file is not an Excel workbook")
    if suffix not in CSV_SUFFIXES:
        raise InputError(f"unsupported file type {suffix!r}: use .csv or .xlsx")
    if sheet:
        raise InputError("--sheet applies to Excel workbooks, and this is a CSV file")
    return _csv_table(stream, sample)


def _csv_table(stream: IO[bytes], sample: bytes) -> Table:
    encoding = detect_encoding(sample)
    text = io.TextIOWrapper(stream, encoding=encoding, errors="strict", newline="")
    first_line = sample.decode(encoding, errors="replace").lstrip("\ufeff").split("\n", 1)[0]
    reader = csv.reader(text, delimiter=sniff_delimiter(first_line))
    try:
        header = next(reader)
    except StopIteration:
        raise InputError("the file is empty") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise InputError(f"line 1: {exc}") from exc

    def rows() -> Iterator[tuple[int, list[str]]]:
        start = reader.line_num + 1
        try:
            while True:
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except UnicodeDecodeError as exc:
                    raise InputError(f"near line {start}: not valid {encoding}: {exc.reason}") from exc
                except csv.Error as exc:
                    raise InputError(f"line {start}: {exc}") from exc
                if any(c.strip() for c in cells):
                    yield start, cells
                start = reader.line_num + 1
        finally:
            # The caller owns the byte stream: let go of it rather than close it with the text wrapper.
            with contextlib.suppress(ValueError):
                text.detach()

    return Table(header, rows(), "csv")


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _excel_table(stream: IO[bytes], sheet: str | None) -> Table:
    from openpyxl import load_workbook  # only Excel uploads pay for importing it

    try:
        # Formulas stay formulas (data_only=False), so a formula in a name is seen and rejected.
        workbook = load_workbook(stream, read_only=True, data_only=False)
    except Exception as exc:  # openpyxl raises many types for a damaged file
        raise InputError(f"the Excel workbook cannot be read: {exc}") from exc
    if sheet is not None and sheet not in workbook.sheetnames:
        workbook.close()
        raise InputError(f"no sheet named {sheet!r}; the workbook has {', '.join(workbook.sheetnames)}")
    worksheet = workbook[sheet] if sheet else workbook.worksheets[0]
    values = worksheet.iter_rows(values_only=True)
    header, header_line = _excel_header(values)
    if not header:
        workbook.close()
        raise InputError(f"sheet {worksheet.title!r} is empty")

    def rows() -> Iterator[tuple[int, list[str]]]:
        try:
            for line, row in enumerate(values, start=header_line + 1):
                cells = [_cell_text(cell) for cell in row]
                while len(cells) > len(header) and not cells[-1].strip():
                    cells.pop()
                if any(c.strip() for c in cells):
                    yield line, cells
        finally:
            workbook.close()

    return Table(header, rows(), "xlsx")


def _excel_header(values: Iterator[tuple[Any, ...]]) -> tuple[list[str], int]:
    """The first row with any text in it, up to its last cell with text, and its line; ([], 0) when no row
    has text. Reads `values` up to that row only."""
    for line, row in enumerate(values, start=1):
        if any(cell is not None and str(cell).strip() for cell in row):
            header = [_cell_text(cell).strip() for cell in row]
            while header and not header[-1]:
                header.pop()
            return header, line
    return [], 0


class RowReader:
    """Turns a table's rows into people, reporting what it cannot use. Build once per file."""

    def __init__(self, header: list[str], match_place: Callable[[str], str | None] | None = None) -> None:
        """`match_place` finds a CBS code (Runtime.municipalities.match; the bundled list when None)."""
        self.header = header
        self.keys = [header_key(name) for name in header]
        if "email" not in self.keys:
            names = ", ".join(repr(h) for h in header if h.strip()) or "no names"
            raise InputError(f"no e-mail column: the header has {names}")
        self.email_column = header[self.keys.index("email")]
        self.match_place = match_place or load_municipalities().match
        self.warnings: list[str] = []

    def read(self, line: int, cells: list[str]) -> Person | Rejection:
        if len(cells) > len(self.header):
            return Rejection(line, "", f"{len(cells)} fields, but the header has {len(self.header)}")
        known: dict[str, str] = {}
        attributes: dict[str, str] = {}
        for name, key, raw in zip(self.header, self.keys, cells, strict=False):
            value = raw.strip()
            if value.startswith(FORMULA_START):
                return Rejection(line, name, f"{value[:40]!r} is a spreadsheet formula, not data")
            if key:
                # A line break in a name or address (Alt+Enter in Excel) is only layout: it becomes a space.
                known[key] = " ".join(value.split())
            elif name.strip() and value:
                attributes[name.strip()] = value.replace("\r\n", "\n").replace("\r", "\n")
        return self._person(line, known, attributes)

    def _person(self, line: int, cells: dict[str, str], attributes: dict[str, str]) -> Person | Rejection:
        address = cells.get("email", "")
        if not address:
            return Rejection(line, self.email_column, "no e-mail address")
        try:
            normalized = check_address(address)
        except EmailNotValidError as exc:
            return Rejection(line, self.email_column, f"{address!r} is not a valid address: {exc}")
        role_text = cells.get("role", "")
        role_key = match_role(role_text) if role_text else None
        if role_text and role_key is None:
            self.warnings.append(f"line {line}: unknown role {role_text!r}")
        place = cells.get("municipality", "")
        code = self.match_place(place) if place else None
        if place and code is None:
            self.warnings.append(f"line {line}: unknown municipality {place!r}")
        if not place and cells.get("organisation"):
            code = self.match_place(cells["organisation"])
        language = (cells.get("language") or "nl").lower()[:2]
        if language not in LANGUAGES:
            self.warnings.append(f"line {line}: unknown language {cells['language']!r}, using nl")
            language = "nl"
        first, prefix, last = (
            cells.get("first_name", ""),
            cells.get("name_prefix", ""),
            cells.get("last_name", ""),
        )
        display = cells.get("name") or " ".join(part for part in (first, prefix, last) if part)
        return Person(
            line=line,
            email=normalized,
            email_key=normalized.casefold(),
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


def parse_people(data: bytes, filename: str = "list.csv") -> tuple[list[Person], list[Rejection], list[str]]:
    """Every usable person in a list held in memory, every row that could not be used, and the warnings."""
    table = open_table(io.BytesIO(data), filename, len(data), max_bytes=len(data) + 1)
    reader = RowReader(table.header)
    people: list[Person] = []
    rejected: list[Rejection] = []
    for line, cells in table.rows:
        found = reader.read(line, cells)
        if isinstance(found, Person):
            people.append(found)
        else:
            rejected.append(found)
    return people, rejected, reader.warnings


def as_json(rejected: list[Rejection]) -> list[dict[str, Any]]:
    return [{"line": r.line, "column": r.column, "reason": r.reason} for r in rejected]
