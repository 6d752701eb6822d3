"""Recipient lists as organisers have them, stored in real databases: formats, hostile files, the exact
report, re-imports, suppression, strict mode, one transaction, segments, coverage and exports."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook, load_workbook
from sqlalchemy import func, select

from invites import db
from invites.db.models import ImportJob, Invitation, OutboundMessage, Recipient
from invites.db.segments import coverage, segment_conditions
from invites.domain.errors import InputError
from invites.domain.eventfile import parse_event_file
from invites.domain.segment import Segment
from invites.domain.states import Answer
from invites.readmodels.exports import export_bytes
from invites.runtime import Runtime
from invites.services import campaigns
from invites.services.events import get_event, load_event
from invites.services.imports import ImportReport, import_stream
from invites.services.suppression import suppress
from tests.conftest import EVENT_FILE, NOW

SLUG = "lokaal-samenspel-2018"
Importer = Callable[..., ImportReport]


@pytest.fixture
def load(runtime: Any) -> None:
    with db.transaction(runtime.sessions) as session:
        load_event(session, parse_event_file(EVENT_FILE.read_bytes()), NOW)


@pytest.fixture
def importer(runtime: Any, load: None, tmp_path: Path) -> Importer:
    """Import bytes as a file of the given name, in one transaction, the way the CLI does."""

    def run(data: bytes, name: str = "list.csv", **options: Any) -> ImportReport:
        path = tmp_path / name
        path.write_bytes(data)
        with db.transaction(runtime.sessions) as session, path.open("rb") as stream:
            return import_stream(session, get_event(session, SLUG), stream, name, len(data), NOW, **options)

    return run


def count(runtime: Any, model: Any) -> int:
    with runtime.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def recipients(runtime: Any) -> dict[str, Recipient]:
    with runtime.sessions() as session:
        return {r.email_key: r for r in session.scalars(select(Recipient))}


DUTCH_EXCEL = (
    "E-mailadres;Voornaam;Tussenvoegsel;Achternaam;Functie;Gemeente;Organisatie;Dieet\r\n"
    "zoe@example.nl;Zoë;van der;Berg;Gemeenteraadslid;gem. De Bilt;Coöperatie De Kern;vegetarisch\r\n"
    "J.DEVRIES@example.org;JAN;de;VRIES;Burgemeester;GM0344;;\r\n"
    "geen-adres;Piet;;Pietersen;raadslid;Utrecht;;\r\n"
    "j.devries@EXAMPLE.org;Jan;de;Vries;wethouder;Utrecht;;\r\n"
    "kees@example.com;Kees;;Kaas;dorpsomroeper;Gemeente Atlantis;;\r\n"
)


@pytest.mark.parametrize(
    "encoding", ["utf-8", "utf-8-sig", "cp1252"], ids=["utf8", "utf8-bom", "windows-1252"]
)
def test_a_dutch_excel_csv_gives_the_exact_report(importer: Importer, runtime: Any, encoding: str) -> None:
    report = importer(DUTCH_EXCEL.encode(encoding))
    assert report.as_dict() == {
        "accepted": 3,
        "updated": 0,
        "duplicates": 1,
        "suppressed": 0,
        "rejected_count": 1,
        "rejected": [
            {
                "line": 4,
                "column": "E-mailadres",
                "reason": "'geen-adres' is not a valid address: An email address must have an @-sign.",
            }
        ],
        "warning_count": 2,
        "warnings": [
            "line 6: unknown role 'dorpsomroeper'",
            "line 6: unknown municipality 'Gemeente Atlantis'",
        ],
        "encoding": encoding,
        "encoding_chosen": False,
    }
    people = recipients(runtime)
    zoe = people["zoe@example.nl"]
    assert (zoe.first_name, zoe.name_prefix, zoe.last_name) == ("Zoë", "van der", "Berg")
    assert zoe.role_key == "council_member" and zoe.municipality_code == "GM0310"
    assert zoe.organisation == "Coöperatie De Kern" and zoe.attributes == {"Dieet": "vegetarisch"}
    jan = people["j.devries@example.org"]
    assert (jan.first_name, jan.last_name) == ("JAN", "VRIES"), "names are never re-cased"
    assert jan.role_key == "mayor" and jan.municipality_code == "GM0344"
    assert people["kees@example.com"].role_key is None


def test_tabs_and_commas_are_sniffed(importer: Importer, runtime: Any) -> None:
    tabbed = "email\tnaam\tfunctie\na@example.org\tAnne\tgriffier\n"
    commas = 'Email,Name,Role\nb@example.org,"Bakker, B.",Town Clerk\n'
    assert importer(tabbed.encode()).accepted == 1
    assert importer(commas.encode()).accepted == 1
    people = recipients(runtime)
    assert people["a@example.org"].role_key == "clerk" and people["b@example.org"].role_key == "secretary"
    assert people["b@example.org"].display_name == "Bakker, B."


def workbook_bytes(sheets: dict[str, list[list[Any]]]) -> bytes:
    book = Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def test_excel_first_sheet_or_the_named_one(importer: Importer, runtime: Any) -> None:
    data = workbook_bytes(
        {
            "Raad": [
                ["E-mail", "Naam", "Rol"],
                ["r1@example.org", "Raad Een", "raadslid"],
                [None, None, None],
                ["r2@example.org", '=HYPERLINK("https://evil.example.com","Klik")', "raadslid"],
            ],
            "College": [
                [None],
                ["E-mailadres", "Naam", "Functie", "Telefoon"],
                ["c1@example.org", "Col Lege", "wethouder", 306123456],
            ],
        }
    )
    first = importer(data, "lijst.xlsx")
    assert first.accepted == 1
    assert [(r.line, r.column) for r in first.rejected] == [(4, "Naam")]
    assert "spreadsheet formula" in first.rejected[0].reason
    named = importer(data, "lijst.xlsx", sheet="College")
    assert named.accepted == 1 and named.rejected == []
    assert recipients(runtime)["c1@example.org"].attributes == {"Telefoon": "306123456"}
    with pytest.raises(InputError, match="no sheet named 'Bestuur'; the workbook has Raad, College"):
        importer(data, "lijst.xlsx", sheet="Bestuur")


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("leeg.csv", b"", "the file is empty"),
        ("leeg.csv", b"\r\n  \r\n", "the file is empty"),
        ("rommel.csv", bytes(range(256)) * 4, "binary"),
        ("lijst.pdf", b"%PDF-1.4 email\n", "unsupported file type '.pdf'"),
        ("lijst.xlsx", b"email\na@example.org\n", "not an Excel workbook"),
        ("lijst.csv", workbook_bytes({"S": [["email"], ["a@example.org"]]}), "Excel workbook, but its name"),
        ("oud.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "old Excel .xls"),
        ("lijst.csv", b"naam;functie\nAnne;raadslid\n", "no e-mail column: the header has 'naam', 'functie'"),
    ],
)
def test_hostile_files_are_refused_whole_with_a_clear_error(
    importer: Importer, runtime: Any, name: str, data: bytes, message: str
) -> None:
    with pytest.raises(InputError, match=message) as raised:
        importer(data, name)
    assert str(raised.value).startswith(name + ": ")
    assert count(runtime, Recipient) == 0 and count(runtime, ImportJob) == 0, "nothing half-written"


def test_a_file_over_the_size_limit_is_refused(importer: Importer, runtime: Any) -> None:
    with pytest.raises(InputError, match="over the limit of 100 bytes"):
        importer(b"email\n" + b"a@example.org\n" * 20, max_bytes=100)
    assert count(runtime, Recipient) == 0


def test_bad_rows_are_reported_and_the_good_ones_kept(importer: Importer, runtime: Any) -> None:
    data = (
        b"email,naam,notitie\r\n"
        b'a@example.org,"Anne\r\nAkker","regel een\r\nregel twee"\r\n'
        b"b@example.org,Bram,x,extra\r\n"
        b"c@example.org,=1+1,\r\n"
        b"d@example.org,-Dirk-,\r\n"
    )
    report = importer(data)
    assert report.accepted == 2
    assert [(r.line, r.column, r.reason) for r in report.rejected] == [
        (5, "", "4 fields, but the header has 3"),
        (6, "naam", "'=1+1' is a spreadsheet formula, not data"),
    ]
    anne = recipients(runtime)["a@example.org"]
    assert anne.display_name == "Anne Akker", "a line break in a name is only layout"
    assert anne.attributes == {"notitie": "regel een\nregel twee"}


def test_importing_again_updates_and_adds_nobody_twice(importer: Importer, runtime: Any) -> None:
    importer(DUTCH_EXCEL.encode())
    again = importer(DUTCH_EXCEL.replace("Coöperatie De Kern", "De Kern").encode())
    assert (again.accepted, again.updated, again.duplicates) == (0, 3, 1)
    assert count(runtime, Recipient) == 3 and count(runtime, Invitation) == 3
    assert recipients(runtime)["zoe@example.nl"].organisation == "De Kern"


def test_suppressed_addresses_are_never_invited_again(importer: Importer, runtime: Any) -> None:
    with db.transaction(runtime.sessions) as session:
        assert suppress(session, "ZOE@example.nl", "unsubscribed", NOW)
        assert not suppress(session, "zoe@example.nl", "hard-bounce", NOW)
    report = importer(DUTCH_EXCEL.encode())
    assert (report.accepted, report.suppressed) == (2, 1)
    assert "zoe@example.nl" not in recipients(runtime)


def test_strict_rejects_the_whole_file(importer: Importer, runtime: Any) -> None:
    with pytest.raises(InputError, match=r"1 rows rejected, so nothing was imported \(first: line 4"):
        importer(DUTCH_EXCEL.encode(), strict=True)
    assert count(runtime, Recipient) == 0 and count(runtime, Invitation) == 0


def test_a_crash_halfway_stores_nothing(importer: Importer, runtime: Any) -> None:
    rows = "".join(f"p{i}@example.org,Persoon {i}\n" for i in range(2500))

    def crash(done: int) -> None:
        if done >= 2000:
            raise RuntimeError("the power went out")

    with pytest.raises(RuntimeError, match="power"):
        importer(("email,naam\n" + rows).encode(), progress=crash)
    assert count(runtime, Recipient) == 0 and count(runtime, Invitation) == 0


def test_another_reference_list_of_municipalities(importer: Importer, runtime: Any, tmp_path: Path) -> None:
    other = tmp_path / "gemeenten.csv"
    other.write_text("cbs_code,name,province,valid_from,valid_until\nGM0363,Amsterdam,Noord-Holland,,\n")
    # The list is the Runtime's (INVITES_MUNICIPALITIES_FILE), handed down to the import.
    configured = Runtime(runtime.settings.model_copy(update={"municipalities_file": other}))
    report = importer(
        b"email,gemeente\na@example.org,Gemeente Amsterdam\nb@example.org,Utrecht\n",
        match_place=configured.municipalities.match,
    )
    assert report.warnings == ["line 3: unknown municipality 'Utrecht'"]
    assert recipients(runtime)["a@example.org"].municipality_code == "GM0363"
    # The process's own Runtime still reads the bundled list: nothing module-wide was changed.
    assert runtime.municipalities.match("Utrecht") == "GM0344"
    with pytest.raises(FileNotFoundError, match="INVITES_MUNICIPALITIES_FILE"):
        Runtime(runtime.settings.model_copy(update={"municipalities_file": tmp_path / "missing.csv"}))


SEGMENT_LIST = (
    "email,naam,functie,gemeente,taal,tags\n"
    "m1@example.org,M Een,burgemeester,Utrecht,nl,sociaal\n"
    "m2@example.org,M Twee,burgemeester,Zeist,en,\n"
    'r1@example.org,R Een,raadslid,Utrecht,nl,"sociaal, wonen"\n'
    "r2@example.org,R Twee,raadslid,Houten,nl,wonen\n"
    "x1@example.org,X Een,,,nl,\n"
)


def test_a_campaign_reaches_only_its_segment(importer: Importer, runtime: Any) -> None:
    importer(SEGMENT_LIST.encode())

    def members(segment: Segment) -> set[str]:
        with runtime.sessions() as session:
            event = get_event(session, SLUG)
            return set(
                session.scalars(
                    select(Recipient.email_key)
                    .join(Invitation, Invitation.recipient_id == Recipient.id)
                    .where(Invitation.event_id == event.id, *segment_conditions(segment, event))
                )
            )

    assert members(Segment.parse(municipalities=["gem. Utrecht"], tags=["wonen"])) == {"r1@example.org"}
    assert members(Segment.parse(languages=["en"])) == {"m2@example.org"}
    assert members(Segment.parse(tags=["sociaal"])) == {"m1@example.org", "r1@example.org"}
    assert len(members(Segment())) == 5
    with pytest.raises(InputError, match="unknown role 'keizer'"):
        Segment.parse(roles=["keizer"])

    mayors = Segment.parse(roles=["Burgemeester"])
    started = campaigns.start_campaign(
        runtime.sessions, SLUG, "invitation", runtime.settings, runtime.templates, NOW, segment=mayors
    )
    assert started.total == 2
    with runtime.sessions() as session:
        assert set(session.scalars(select(OutboundMessage.to_address))) == {
            "m1@example.org",
            "m2@example.org",
        }
    everyone = campaigns.start_campaign(
        runtime.sessions, SLUG, "invitation", runtime.settings, runtime.templates, NOW
    )
    assert (everyone.total, everyone.new_rows) == (5, 3), "the mayors are not invited twice"


def test_the_second_meeting_can_invite_who_accepted_the_first(runtime: Any, tmp_path: Path) -> None:
    first_file = (
        EVENT_FILE.read_text(encoding="utf-8")
        .replace('slug = "lokaal-samenspel-2018"', 'slug = "lokaal-samenspel-2017"')
        .replace("date = 2018-02-13", "date = 2017-12-13")
        .replace("position = 2", "position = 1")
    )
    with db.transaction(runtime.sessions) as session:
        first = load_event(session, parse_event_file(first_file.encode()), NOW).event
        second = load_event(session, parse_event_file(EVENT_FILE.read_bytes()), NOW).event
        for event in (first, second):
            data = b"email\na@example.org\nb@example.org\nc@example.org\n"
            import_stream(session, event, io.BytesIO(data), "l.csv", len(data), NOW)
        session.flush()
        answers = {"a@example.org": Answer.ACCEPTED, "b@example.org": Answer.DECLINED}
        for invitation in session.scalars(select(Invitation).where(Invitation.event_id == first.id)):
            invitation.answer = answers.get(invitation.recipient.email_key)
    with runtime.sessions() as session:
        second = get_event(session, SLUG)
        attended = session.scalars(
            select(Recipient.email_key)
            .join(Invitation, Invitation.recipient_id == Recipient.id)
            .where(
                Invitation.event_id == second.id, *segment_conditions(Segment(attended_previous=True), second)
            )
        ).all()
    assert attended == ["a@example.org"]


def test_coverage_shows_every_municipality_and_role(importer: Importer, runtime: Any) -> None:
    importer(SEGMENT_LIST.encode())
    with db.transaction(runtime.sessions) as session:
        invitation = session.scalars(
            select(Invitation).join(Recipient).where(Recipient.email_key == "r1@example.org")
        ).one()
        invitation.answer = Answer.ACCEPTED
    with runtime.sessions() as session:
        matrix = coverage(session, get_event(session, SLUG))
    rows = {row["code"]: row for row in matrix["municipalities"]}
    assert "GM1961" not in rows, "Vijfheerenlanden did not exist yet on 13 February 2018"
    assert "GM0620" in rows and rows["GM0620"]["total"]["invited"] == 0
    assert rows["GM0344"]["roles"]["mayor"] == {"invited": 1, "accepted": 0, "tentative": 0, "declined": 0}
    assert rows["GM0344"]["roles"]["council_member"]["accepted"] == 1
    assert rows["unknown"]["roles"]["unknown"]["invited"] == 1
    assert matrix["totals"]["all"]["invited"] == 5 and matrix["totals"]["mayor"]["invited"] == 2
    assert "Utrecht" not in matrix["nobody_accepted"] and "Zeist" in matrix["nobody_accepted"]


def test_exports_neutralise_formulas(importer: Importer, runtime: Any) -> None:
    importer(b"email,naam,telefoon,notitie\na@example.org,-Anne-,+31 30 123,@SUM(1)\n")
    with runtime.sessions() as session:
        event = get_event(session, SLUG)
        text = export_bytes(session, event, "csv").decode("utf-8-sig")
        book = load_workbook(io.BytesIO(export_bytes(session, event, "xlsx")))
    header, row = list(csv.reader(io.StringIO(text), delimiter=";"))
    values = dict(zip(header, row, strict=True))
    assert values["display_name"] == "'-Anne-"
    assert values["telefoon"] == "'+31 30 123" and values["notitie"] == "'@SUM(1)"
    cells = [cell for cell in next(book.active.iter_rows(min_row=2, max_row=2))]
    assert {cell.data_type for cell in cells if cell.value} == {"s"}
    assert "'@SUM(1)" in [cell.value for cell in cells]
