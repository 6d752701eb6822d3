"""The `invites` command as a user runs it: a process of its own, against SQLite and PostgreSQL."""

from __future__ import annotations

import json
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from invites import db
from invites.adapters.sink import stored_messages
from invites.db.models import ImportJob, Invitation, Recipient, Suppression
from invites.domain.eventfile import parse_event_file
from invites.readmodels.status import event_status
from invites.services.events import get_event, load_event
from invites.services.imports import import_list
from tests.conftest import AUDIENCE_FILE, EVENT_FILE, NOW, run_cli

SLUG = "lokaal-samenspel-2018"
HEADER = "E-mailadres;Voornaam;Tussenvoegsel;Achternaam;Functie;Gemeente;Dieet"
# Saved by a Dutch Excel: semicolons, Windows-1252, CRLF; the quoted cell on line 2 spans two physical lines,
# so the invalid address is on physical line 4, not on the third record.
LIST_ROWS = [
    'zoe.vandijk@example.nl;Zoë;van;Dijk;Wethouder;Utrecht;"vegetarisch\r\ngeen noten"',
    "niet-een-adres;Piet;;Jansen;Raadslid;Utrecht;",
    "ZOE.VANDIJK@EXAMPLE.NL;Zoë;van;Dijk;Wethouder;Utrecht;",
    "bestuur@example.org;Anna;;Visser;Voorzitter Coöperatie;Nieuwegein;",
    "bram@example.com;Bram;de;Vries;Griffier;Houten;",
    "afgemeld@example.org;Kees;;Smit;Raadslid;Houten;",
]
SUPPRESSED = "afgemeld@example.org"


def write_list(path: Path) -> Path:
    path.write_bytes("\r\n".join([HEADER, *LIST_ROWS, ""]).encode("cp1252"))
    return path


def one_line(text: str) -> str:
    return " ".join(text.split())


def parse(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=default)
    assert isinstance(message, EmailMessage)
    return message


def counts(runtime: Any) -> dict[str, Any]:
    with runtime.sessions() as session:
        return event_status(session, get_event(session, SLUG))


def load_example_event(runtime: Any) -> None:
    with db.transaction(runtime.sessions) as session:
        load_event(session, parse_event_file(EVENT_FILE.read_bytes(), str(EVENT_FILE)), NOW)


def test_event_load_prints_the_slug_and_reports_calendar_changes(settings: Any, tmp_path: Path) -> None:
    first = run_cli(settings, "event", "load", str(EVENT_FILE))
    assert first.stdout == SLUG + "\n"
    assert first.stderr == ""

    again = run_cli(settings, "event", "load", str(EVENT_FILE))
    assert again.stdout == SLUG + "\n"
    assert "changed" not in again.stderr

    text = EVENT_FILE.read_text(encoding="utf-8")
    assert text.count('start = "19:30"\n') == 2, "the event's start and one programme item's"
    moved = tmp_path / "moved.toml"
    moved.write_text(text.replace('start = "19:30"\n', 'start = "20:00"\n', 1), encoding="utf-8")
    changed = run_cli(settings, "event", "load", str(moved))
    assert changed.stdout == SLUG + "\n"
    assert one_line(changed.stderr) == "changed: starts_at (calendar sequence raised)"

    status = json.loads(run_cli(settings, "status", SLUG, "--json").stdout)
    assert status["event"] == SLUG
    assert status["sequence"] == 1
    assert status["invited"] == 0


BROKEN = {
    "end-before-start": (
        lambda text: text.replace('end = "22:00"\nwalk_in', 'end = "19:00"\nwalk_in', 1),
        "field 'end': 19:00 is not after the start 19:30",
    ),
    "missing-date": (
        lambda text: text.replace("date = 2018-02-13\n", "", 1),
        "field 'date': is required, as YYYY-MM-DD",
    ),
    "bad-toml": (lambda text: text.replace('slug = "', "slug = ", 1), "not valid TOML"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_event_file_exits_1_and_names_the_field(settings: Any, tmp_path: Path, case: str) -> None:
    edit, expected = BROKEN[case]
    original = EVENT_FILE.read_text(encoding="utf-8")
    broken_text = edit(original)
    assert broken_text != original, "the edit must apply to the example file"
    broken = tmp_path / "broken.toml"
    broken.write_text(broken_text, encoding="utf-8")

    result = run_cli(settings, "event", "load", str(broken), check=False)

    assert result.returncode == 1
    assert result.stdout == "", "no slug is printed for an event that was not loaded"
    message = one_line(result.stderr)
    assert message.startswith(f"error: {broken}:")
    assert expected in message
    assert "Traceback" not in result.stderr


def test_commands_work_on_a_fresh_empty_database(settings: Any) -> None:
    # No `runtime` fixture here: nothing has created the schema.
    missing = run_cli(settings, "status", SLUG, "--json", check=False)
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert one_line(missing.stderr) == f"error: no event with slug '{SLUG}'"

    upgraded = run_cli(settings, "db", "upgrade")
    assert upgraded.stdout.startswith("database at head: ")
    assert upgraded.stderr == ""


def test_import_reports_every_row_and_a_second_import_only_updates(
    runtime: Any, settings: Any, tmp_path: Path
) -> None:
    load_example_event(runtime)
    with db.transaction(runtime.sessions) as session:
        session.add(Suppression(email_key=SUPPRESSED, reason="unsubscribed", at=NOW))
    path = write_list(tmp_path / "genodigden.csv")

    first = json.loads(run_cli(settings, "import", str(path), "--event", SLUG, "--json").stdout)

    rejected = first.pop("rejected")
    assert first == {
        "accepted": 3,
        "updated": 0,
        "duplicates": 1,
        "suppressed": 1,
        "warnings": ["line 6: unknown role 'Voorzitter Coöperatie'"],
        "rejected_count": 1,
        "warning_count": 1,
        "encoding": "cp1252",  # the list is written in Windows-1252, as a Dutch Excel saves it
        "encoding_chosen": False,
    }
    assert [{k: v for k, v in r.items() if k != "reason"} for r in rejected] == [
        {"line": 4, "column": "E-mailadres"}
    ]
    assert rejected[0]["reason"].startswith("'niet-een-adres' is not a valid address")
    assert counts(runtime)["invited"] == 3
    with runtime.sessions() as session:
        zoe = session.scalars(select(Recipient).where(Recipient.email_key == "zoe.vandijk@example.nl")).one()
        assert (zoe.first_name, zoe.display_name) == ("Zoë", "Zoë van Dijk")
        assert zoe.role_key == "alderman" and zoe.municipality_code == "GM0344"
        assert zoe.attributes["Dieet"].split() == ["vegetarisch", "geen", "noten"]
        first_invitations = set(session.scalars(select(Invitation.public_id)))

    second = json.loads(run_cli(settings, "import", str(path), "--event", SLUG, "--json").stdout)

    assert second["accepted"] == 0
    assert second["updated"] == 3
    assert (second["duplicates"], second["suppressed"]) == (1, 1)
    assert second["rejected"] == rejected
    assert counts(runtime)["invited"] == 3
    with runtime.sessions() as session:
        assert set(session.scalars(select(Invitation.public_id))) == first_invitations
        assert session.scalar(select(func.count()).select_from(ImportJob)) == 2


def test_a_strict_import_with_a_bad_row_stores_nothing(runtime: Any, settings: Any, tmp_path: Path) -> None:
    load_example_event(runtime)
    path = write_list(tmp_path / "genodigden.csv")

    strict = run_cli(settings, "import", str(path), "--event", SLUG, "--strict", check=False)

    assert strict.returncode == 1
    assert strict.stdout == ""
    assert counts(runtime)["invited"] == 0
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Recipient)) == 0
        assert session.scalar(select(func.count()).select_from(ImportJob)) == 0
    message = one_line(strict.stderr)
    assert "1 rows rejected, so nothing was imported" in message
    assert "line 4, column 'E-mailadres'" in message

    unknown = run_cli(settings, "import", str(path), "--event", "bestaat-niet", check=False)
    assert unknown.returncode == 1
    assert "no event with slug 'bestaat-niet'" in one_line(unknown.stderr)
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Recipient)) == 0

    # The message is written as one line (so a log or grep sees it whole), and names the file once, not as
    # "/path/genodigden.csv: genodigden.csv: ...".
    assert strict.stderr.count("\n") == 1, strict.stderr
    assert message.count("genodigden.csv") == 1, message


def test_status_and_render_for_an_imported_audience(runtime: Any, settings: Any, tmp_path: Path) -> None:
    load_example_event(runtime)
    with db.transaction(runtime.sessions) as session:
        report = import_list(
            session, get_event(session, SLUG), AUDIENCE_FILE.read_bytes(), AUDIENCE_FILE.name, NOW
        )
        assert report.accepted == 156
    status = json.loads(run_cli(settings, "status", SLUG, "--json").stdout)
    expected = {
        "event": SLUG,
        "title": "Inspiratiebijeenkomst Lokaal samenspel in verandering",
        "status": "published",
        "sequence": 0,
        "invited": 156,
        "queued": 0,
        "sent": 0,
        "deferred": 0,
        "failed": 0,
        "accepted": 0,
        "declined": 0,
        "tentative": 0,
        "no_answer": 156,
    }
    assert {key: status.get(key) for key in expected} == expected
    address = "stijn.berg@amersfoort.example.nl"

    dutch = run_cli(settings, "render", SLUG, "--to", address)
    message = parse(dutch.stdout.encode())
    assert message["Subject"].startswith("Uitnodiging: Inspiratiebijeenkomst Lokaal samenspel")
    assert "dinsdag 13 februari 2018" in message["Subject"]
    assert [a.addr_spec for a in message["To"].addresses] == [address]
    assert message["Content-Language"] == "nl"
    assert dutch.stderr == ""

    english = parse(
        run_cli(settings, "render", SLUG, "--to", address.upper(), "--lang", "en").stdout.encode()
    )
    assert english["Subject"].startswith("Invitation: Inspiratiebijeenkomst")
    assert "Tuesday 13 February 2018" in english["Subject"]
    assert [a.addr_spec for a in english["To"].addresses] == [address]

    target = tmp_path / "bericht.eml"
    written = run_cli(settings, "render", SLUG, "--to", address, "-o", str(target))
    assert written.stdout == ""
    data = target.read_bytes()
    assert data.count(b"\n") == data.count(b"\r\n"), "RFC 5322 lines end in CRLF"
    from_file = parse(data)
    for header in ("Subject", "To", "From", "Message-ID", "Content-Language"):
        assert str(from_file[header]) == str(message[header]), header
    assert [p.get_content_type() for p in from_file.walk()] == [p.get_content_type() for p in message.walk()]
    plain = from_file.get_body(("plain",))
    assert plain is not None
    assert settings.base_url + "/r/" in plain.get_content()

    stranger = run_cli(settings, "render", SLUG, "--to", "onbekend@example.org", check=False)
    assert stranger.returncode == 1
    assert stranger.stdout == ""
    assert "onbekend@example.org is not invited" in one_line(stranger.stderr)


def test_a_cancelled_event_renders_and_test_sends_its_cancellation_and_never_a_request(
    runtime: Any, settings: Any, sink: Any
) -> None:
    load_example_event(runtime)
    with db.transaction(runtime.sessions) as session:
        import_list(session, get_event(session, SLUG), AUDIENCE_FILE.read_bytes(), AUDIENCE_FILE.name, NOW)
    address = "stijn.berg@amersfoort.example.nl"
    before = parse(run_cli(settings, "render", SLUG, "--to", address).stdout.encode())
    assert before.get_body(("plain",)) is not None
    run_cli(settings, "event", "cancel", SLUG, "--reason", "De zaal is niet beschikbaar.")

    refused = (
        "is cancelled: its {} would carry a calendar REQUEST, which puts the meeting back in every calendar"
    )
    for kind in ("invitation", "reminder", "update"):
        rendered = run_cli(settings, "render", SLUG, "--to", address, "--kind", kind, check=False)
        assert rendered.returncode == 1, kind
        assert rendered.stdout == ""
        assert refused.format(kind) in one_line(rendered.stderr), rendered.stderr
    # A test send's made-up person has accepted, so their confirmation would put the meeting back too.
    for kind in ("invitation", "rsvp-confirmation"):
        tested = run_cli(
            settings, "send", SLUG, "--test-to", "organisator@example.org", "--kind", kind, check=False
        )
        assert tested.returncode == 1, kind
        assert refused.format(kind) in one_line(tested.stderr), tested.stderr
    # This person never answered: their confirmation has nothing to put in a calendar.
    unanswered = parse(
        run_cli(settings, "render", SLUG, "--to", address, "--kind", "rsvp-confirmation").stdout.encode()
    )
    assert [p for p in unanswered.walk() if p.get_content_type() == "text/calendar"] == []

    cancellation = parse(
        run_cli(settings, "render", SLUG, "--to", address, "--kind", "cancellation").stdout.encode()
    )
    calendar = next(p for p in cancellation.walk() if p.get_content_type() == "text/calendar")
    assert calendar.get_param("method") == "CANCEL"
    assert b"SEQUENCE:1\r\n" in calendar.get_payload(decode=True)
    sent = run_cli(settings, "send", SLUG, "--test-to", "organisator@example.org", "--kind", "cancellation")
    assert "test cancellation sent to organisator@example.org" in sent.stdout
    # The sink got the one test cancellation, and not one of the refused test sends.
    [message] = stored_messages(sink.directory)
    received = parse(message.read_bytes())
    assert received["Subject"].startswith("[TEST] ")
    [part] = [p for p in received.walk() if p.get_content_type() == "text/calendar"]
    assert part.get_param("method") == "CANCEL"
