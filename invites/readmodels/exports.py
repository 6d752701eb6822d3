"""Exports of an event's audience to CSV and Excel, safe to open in a spreadsheet.

A cell that starts with =, +, -, @, a tab or a carriage return would run as a formula in Excel or
LibreOffice; OWASP's advice is to prefix it with a single quote, which both show as text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from invites.db.models import Event, Invitation, Recipient
from invites.db.segments import segment_conditions
from invites.domain.reference import Municipalities, load_municipalities
from invites.domain.segment import Segment

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
COLUMNS = (
    "email",
    "display_name",
    "first_name",
    "name_prefix",
    "last_name",
    "role",
    "municipality_code",
    "municipality",
    "organisation",
    "language",
    "answer",
    "answered_at",
    "guests",
)


def neutralise(value: Any) -> str:
    """The cell as text that no spreadsheet will evaluate."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def audience_rows(
    session: Session, event: Event, segment: Segment | None = None, places: Municipalities | None = None
) -> Iterator[list[str]]:
    """The header, then one neutralised row per invited recipient, read in chunks; the places named from
    `places` (the Runtime's list; the bundled one when None)."""
    places = places or load_municipalities()
    conditions = segment_conditions(segment or Segment(), event)
    attribute_names = sorted(
        {
            name
            for attributes in session.scalars(
                select(Recipient.attributes)
                .join(Invitation, Invitation.recipient_id == Recipient.id)
                .where(Invitation.event_id == event.id, *conditions)
            )
            for name in (attributes or {})
        }
    )
    yield [*COLUMNS, *attribute_names]
    result = session.execute(
        select(Recipient, Invitation)
        .join(Invitation, Invitation.recipient_id == Recipient.id)
        .where(Invitation.event_id == event.id, *conditions)
        .order_by(Recipient.municipality_code, Recipient.role_key, Recipient.last_name, Recipient.email_key)
        .execution_options(yield_per=1000)
    )
    for recipient, invitation in result:
        values = [
            recipient.email,
            recipient.display_name,
            recipient.first_name,
            recipient.name_prefix,
            recipient.last_name,
            recipient.role_key or recipient.role_label,
            recipient.municipality_code or "",
            places.name(recipient.municipality_code),
            recipient.organisation,
            recipient.language,
            invitation.answer.value if invitation.answer else "",
            invitation.answered_at.isoformat() if invitation.answered_at else "",
            invitation.guests,
            *((recipient.attributes or {}).get(name, "") for name in attribute_names),
        ]
        yield [neutralise(value) for value in values]


def write_csv(rows: Iterator[list[str]], out: IO[str]) -> None:
    # Semicolons and a BOM: what a Dutch Excel opens correctly with a double click.
    out.write("\ufeff")
    csv.writer(out, delimiter=";", lineterminator="\r\n").writerows(rows)


def write_xlsx(rows: Iterator[list[str]], out: IO[bytes]) -> None:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Genodigden")
    for row in rows:
        cells = []
        for value in row:
            cell = WriteOnlyCell(sheet, value=value)
            # Typed as a string, so even an unneutralised "=" could never become a formula.
            cell.data_type = "s"
            cells.append(cell)
        sheet.append(cells)
    workbook.save(out)


def export_bytes(
    session: Session,
    event: Event,
    fmt: str,
    segment: Segment | None = None,
    places: Municipalities | None = None,
) -> bytes:
    rows = audience_rows(session, event, segment, places)
    if fmt == "csv":
        text = io.StringIO(newline="")
        write_csv(rows, text)
        return text.getvalue().encode("utf-8")
    if fmt == "xlsx":
        binary = io.BytesIO()
        write_xlsx(rows, binary)
        return binary.getvalue()
    raise ValueError(f"unknown export format {fmt!r}; one of csv, xlsx")
