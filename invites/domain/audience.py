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
import struct
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from pathlib import PurePath
from typing import IO, Any

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
# Of the rejections and warnings, a report keeps this many (and counts them all).
REPORT_KEEP = 1000
# A reason or warning quotes at most this much of the cell it is about.
QUOTE_CHARS = 60
# Encodings an organiser may choose (the upload form's list; the CLI takes any Python codec name), with the
# name a report shows. "auto" is the rule of detect_encoding.
ENCODINGS = {
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8 (met BOM)",
    "utf-16": "UTF-16 (Excel “Unicode-tekst”)",
    "cp1252": "Windows-1252",
    "iso8859-15": "ISO-8859-15",
    "mac-roman": "Mac OS Roman",
}
# A workbook is a zip of a dozen parts; thousands would only make reading its directory costly.
MAX_ZIP_MEMBERS = 1000
# Compression ratios are judged only for parts larger than this: tiny parts compress wildly.
RATIO_FLOOR = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What an import reads before it refuses the file (the INVITES_IMPORT_MAX_* settings)."""

    # A workbook, before openpyxl opens it: all its parts unpacked, one part unpacked, and one part's
    # unpacked size over its packed size.
    max_uncompressed_bytes: int = 100 * 1024 * 1024
    max_member_bytes: int = 50 * 1024 * 1024
    max_compression_ratio: int = 100
    # One cell; Excel itself holds at most 32,767 characters in a cell.
    max_cell_chars: int = 32_767
    # The whole import: rows read, rows rejected.
    max_rows: int = 100_000
    max_rejections: int = 10_000


DEFAULT_LIMITS = Limits()


def dutch_number(value: int) -> str:
    """1234567 as 1.234.567."""
    return f"{value:,}".replace(",", ".")


def quote(value: str) -> str:
    """A cell quoted in a reason, cut short so a huge cell cannot make a huge report."""
    return repr(value if len(value) <= QUOTE_CHARS else value[:QUOTE_CHARS] + "…")


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
    """An opened list: its header, and its rows as (line number, cells), read lazily; a CSV file's
    encoding (a Python codec name, a key of ENCODINGS when it is one of those)."""

    header: list[str]
    rows: Iterator[tuple[int, list[str]]]
    kind: str
    encoding: str | None = None


def header_key(name: str) -> str | None:
    return _HEADER_INDEX.get(fold(name).replace(" ", "").replace("_", ""))


def detect_encoding(stream: IO[bytes], chosen: str | None = None) -> str:
    """The encoding the whole stream is in, as a Python codec name; leaves the stream at its start.

    Automatically (`chosen` empty or "auto"): strict UTF-8, with or without a BOM; then UTF-16 with a BOM
    (Excel's "Unicode-tekst"); otherwise Windows-1252, what a Dutch Excel saves as "CSV (gescheiden door
    lijstscheidingsteken)". Never a guess: charset-normalizer's best guess turned "Thérèse" into
    "Thérčse". Raises InputError when the bytes are not in the chosen encoding, or in none of these.
    """
    head = stream.read(4)
    stream.seek(0)
    if chosen and chosen != "auto":
        return _chosen_encoding(stream, chosen, head)
    if head.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        if b"\x00" in stream.read(SAMPLE_BYTES):
            stream.seek(0)
            raise InputError("the file is binary, not a CSV text file")
        stream.seek(0)
        if _first_undecodable(stream, "utf-8") is None:
            return "utf-8"
        encoding = "cp1252"
    where = _first_undecodable(stream, encoding)
    if where is not None:
        raise InputError(
            f"het bestand is geen UTF-8, UTF-16 of Windows-1252 ({where}): sla het in Excel op als "
            "\u201cCSV UTF-8 (door komma's gescheiden)\u201d, of kies bij het uploaden de tekencodering "
            "(--encoding)"
        )
    return encoding


def _chosen_encoding(stream: IO[bytes], chosen: str, head: bytes) -> str:
    """The organiser's encoding as a codec name (reading a BOM it allows), once all the stream is in it."""
    try:
        encoding = codecs.lookup(chosen).name
    except LookupError:
        raise InputError(
            f"onbekende tekencodering {quote(chosen)}: kies utf-8, utf-16, cp1252, of laat haar automatisch "
            "herkennen"
        ) from None
    if encoding == "utf-8" and head.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    elif encoding in ("utf-16-le", "utf-16-be") and head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        encoding = "utf-16"
    where = _first_undecodable(stream, encoding)
    if where is not None:
        raise InputError(
            f"het bestand is niet in {ENCODINGS.get(encoding, encoding)} ({where}): kies een andere "
            "tekencodering, of laat haar automatisch herkennen"
        )
    return encoding


def _first_undecodable(stream: IO[bytes], encoding: str) -> str | None:
    """Where the stream stops being text in this encoding ("regel 3, byte 0x81"), or None when all of it
    is; reads it in chunks and leaves it at its start."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    lines = 1
    try:
        while chunk := stream.read(1 << 20):
            try:
                lines += decoder.decode(chunk).count("\n")
            except UnicodeDecodeError as exc:
                partial = exc.object[: exc.start].decode(encoding, errors="replace").count("\n")
                byte = exc.object[exc.start : exc.start + 1].hex()
                return f"regel {dutch_number(lines + partial)}, byte 0x{byte}"
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return f"regel {dutch_number(lines)}, het bestand eindigt midden in een teken"
        return None
    finally:
        stream.seek(0)


def sniff_delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def open_table(
    stream: IO[bytes],
    filename: str,
    size: int,
    max_bytes: int,
    sheet: str | None = None,
    *,
    encoding: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Table:
    """Open an uploaded list, checking its size, type and encoding (automatic unless `encoding` names
    one; a workbook has none) before any row is read, and a workbook's unpacked sizes before it is
    opened."""
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
        return _excel_table(stream, sheet, limits)
    if suffix in EXCEL_SUFFIXES:
        raise InputError(f"the name ends in {suffix!r}, but the file is not an Excel workbook")
    if suffix not in CSV_SUFFIXES:
        raise InputError(f"unsupported file type {suffix!r}: use .csv or .xlsx")
    if sheet:
        raise InputError("--sheet applies to Excel workbooks, and this is a CSV file")
    return _csv_table(stream, sample, detect_encoding(stream, encoding), limits)


def _too_long(line: int, column: int, chars: int, limits: Limits) -> InputError:
    return InputError(
        f"regel {dutch_number(line)}, kolom {column}: een cel van {dutch_number(chars)} tekens, meer dan "
        f"de grens van {dutch_number(limits.max_cell_chars)} (INVITES_IMPORT_MAX_CELL_CHARS); "
        "dit is geen naam of adres: verbeter die cel en upload de lijst opnieuw"
    )


def _check_cells(line: int, cells: list[str], limits: Limits) -> None:
    for column, cell in enumerate(cells, start=1):
        if len(cell) > limits.max_cell_chars:
            raise _too_long(line, column, len(cell), limits)


def _csv_table(stream: IO[bytes], sample: bytes, encoding: str, limits: Limits) -> Table:
    text = io.TextIOWrapper(stream, encoding=encoding, errors="strict", newline="")
    first_line = sample.decode(encoding, errors="replace").lstrip("\ufeff").split("\n", 1)[0]
    reader = csv.reader(text, delimiter=sniff_delimiter(first_line))
    try:
        header = next(reader)
    except StopIteration:
        raise InputError("the file is empty") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise InputError(f"line 1: {exc}") from exc
    _check_cells(1, header, limits)

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
                    _check_cells(start, cells, limits)
                    yield start, cells
                start = reader.line_num + 1
        finally:
            # The caller owns the byte stream: let go of it rather than close it with the text wrapper.
            with contextlib.suppress(ValueError):
                text.detach()

    return Table(header, rows(), "csv", encoding)


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def check_workbook(stream: IO[bytes], limits: Limits) -> None:
    """Refuse a workbook that would unpack to more than the limits allow, from its zip directory alone,
    before anything is unpacked; leaves the stream at its start.

    The sizes in the directory can lie, but zipfile (which openpyxl reads through) never unpacks more of
    a part than its directory entry says: a part that is longer fails its CRC check instead.
    """
    advice = "sla de lijst op als CSV, of verdeel haar over kleinere werkmappen"
    try:
        _check_member_count(stream)
        with zipfile.ZipFile(stream) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, struct.error) as exc:
        raise InputError(f"the Excel workbook cannot be read: {exc}") from exc
    finally:
        stream.seek(0)
    total = 0
    for member in members:
        total += member.file_size
        if member.file_size > limits.max_member_bytes:
            raise InputError(
                f"het onderdeel {quote(member.filename)} van de werkmap pakt uit tot "
                f"{dutch_number(member.file_size)} bytes, meer dan de grens van "
                f"{dutch_number(limits.max_member_bytes)} (INVITES_IMPORT_MAX_MEMBER_BYTES): {advice}"
            )
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > RATIO_FLOOR and ratio > limits.max_compression_ratio:
            raise InputError(
                f"het onderdeel {quote(member.filename)} van de werkmap is {ratio:.0f} keer samengeperst, "
                f"meer dan de grens van {limits.max_compression_ratio} "
                "(INVITES_IMPORT_MAX_COMPRESSION_RATIO); zo pakt geen gewone lijst in: sla haar opnieuw "
                "op vanuit Excel, of als CSV"
            )
    if total > limits.max_uncompressed_bytes:
        raise InputError(
            f"de werkmap pakt uit tot {dutch_number(total)} bytes, meer dan de grens van "
            f"{dutch_number(limits.max_uncompressed_bytes)} (INVITES_IMPORT_MAX_UNCOMPRESSED_BYTES): {advice}"
        )


# The zip's end-of-central-directory record: its signature, and where its count of entries is.
EOCD = b"PK\x05\x06"
EOCD_ENTRIES = 10


def _check_member_count(stream: IO[bytes]) -> None:
    """Refuse a zip of very many parts from its last record, before zipfile builds an entry for each."""
    end = stream.seek(0, io.SEEK_END)
    stream.seek(max(0, end - 65_536 - 22))
    tail = stream.read()
    found = tail.rfind(EOCD)
    if found < 0 or found + EOCD_ENTRIES + 2 > len(tail):
        raise InputError("the Excel workbook cannot be read: it has no zip directory")
    (entries,) = struct.unpack_from("<H", tail, found + EOCD_ENTRIES)
    # 0xFFFF says the count is in a zip64 record: a list never needs that many parts.
    if entries > MAX_ZIP_MEMBERS:
        raise InputError(
            f"de werkmap bestaat uit meer dan {dutch_number(MAX_ZIP_MEMBERS)} onderdelen; zo is geen "
            "lijst opgeslagen: sla haar opnieuw op vanuit Excel, of als CSV"
        )


def _excel_table(stream: IO[bytes], sheet: str | None, limits: Limits) -> Table:
    from openpyxl import load_workbook  # only Excel uploads pay for importing it

    check_workbook(stream, limits)
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
    try:
        with _damaged():
            header, header_line = _excel_header(values, limits)
    except InputError:
        workbook.close()
        raise
    if not header:
        workbook.close()
        raise InputError(f"sheet {worksheet.title!r} is empty")

    def rows() -> Iterator[tuple[int, list[str]]]:
        try:
            with _damaged():
                for line, row in enumerate(values, start=header_line + 1):
                    cells = [_cell_text(cell) for cell in row]
                    _check_cells(line, cells, limits)
                    while len(cells) > len(header) and not cells[-1].strip():
                        cells.pop()
                    if any(c.strip() for c in cells):
                        yield line, cells
        finally:
            workbook.close()

    return Table(header, rows(), "xlsx")


@contextlib.contextmanager
def _damaged() -> Iterator[None]:
    """A workbook that fails while its sheet is read is damaged (or lies about its sizes, and fails its CRC
    check): say so, as for one that cannot be opened."""
    try:
        yield
    except InputError:
        raise
    except Exception as exc:  # openpyxl and zipfile raise many types for a damaged file
        raise InputError(f"the Excel workbook cannot be read: {exc}") from exc


def _excel_header(values: Iterator[tuple[Any, ...]], limits: Limits) -> tuple[list[str], int]:
    """The first row with any text in it, up to its last cell with text, and its line; ([], 0) when no row
    has text. Reads `values` up to that row only."""
    for line, row in enumerate(values, start=1):
        if any(cell is not None and str(cell).strip() for cell in row):
            cells = [_cell_text(cell) for cell in row]
            _check_cells(line, cells, limits)
            header = [cell.strip() for cell in cells]
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
        # The first REPORT_KEEP warnings, and how many there were.
        self.warnings: list[str] = []
        self.warning_count = 0

    def _warn(self, text: str) -> None:
        self.warning_count += 1
        if len(self.warnings) < REPORT_KEEP:
            self.warnings.append(text)

    def read(self, line: int, cells: list[str]) -> Person | Rejection:
        if len(cells) > len(self.header):
            return Rejection(line, "", f"{len(cells)} fields, but the header has {len(self.header)}")
        known: dict[str, str] = {}
        attributes: dict[str, str] = {}
        for name, key, raw in zip(self.header, self.keys, cells, strict=False):
            value = raw.strip()
            if value.startswith(FORMULA_START):
                return Rejection(line, name, f"{quote(value[:40])} is a spreadsheet formula, not data")
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
            return Rejection(line, self.email_column, f"{quote(address)} is not a valid address: {exc}")
        role_text = cells.get("role", "")
        role_key = match_role(role_text) if role_text else None
        if role_text and role_key is None:
            self._warn(f"line {line}: unknown role {quote(role_text)}")
        place = cells.get("municipality", "")
        code = self.match_place(place) if place else None
        if place and code is None:
            self._warn(f"line {line}: unknown municipality {quote(place)}")
        if not place and cells.get("organisation"):
            code = self.match_place(cells["organisation"])
        language = (cells.get("language") or "nl").lower()[:2]
        if language not in LANGUAGES:
            self._warn(f"line {line}: unknown language {quote(cells['language'])}, using nl")
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
