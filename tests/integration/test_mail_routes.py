"""The preview and unsubscribe routes over real HTTP, and the test send through a real SMTP server."""

from __future__ import annotations

import re
import resource
import subprocess
import sys
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from typing import Any

import httpx
import pytest
from icalendar import Calendar
from sqlalchemy import select

from invites import db
from invites.adapters.sink import stored_messages
from invites.db.models import HeldAnswer, Invitation, Recipient, Suppression
from invites.domain.eventfile import parse_event_file
from invites.domain.states import HeldKind, HeldState
from invites.domain.tokens import make_token, unsubscribe_token
from invites.services.cancellation import cancel_event
from invites.services.events import get_event, load_event
from tests.conftest import EVENT_FILE, NOW, ROOT, as_person, run_cli, settings_env, sign_in, wait_until

SLUG = "lokaal-samenspel-2018"
ADDRESS = "zoe@example.org"


@dataclass(frozen=True)
class Guest:
    public_id: str
    unsubscribe: str


@pytest.fixture
def guest(runtime: Any, settings: Any) -> Guest:
    with db.transaction(runtime.sessions) as session:
        event = load_event(session, parse_event_file(EVENT_FILE.read_bytes(), str(EVENT_FILE)), NOW).event
        person = Recipient(
            email=ADDRESS,
            email_key=ADDRESS,
            first_name="Zoë",
            name_prefix="van",
            last_name="Ĳsbrandt",
            display_name="Zoë van Ĳsbrandt",
            role_key="mayor",
            municipality_code="GM0353",
            language="nl",
            created_at=NOW,
            updated_at=NOW,
        )
        session.add(person)
        session.flush()
        session.add(
            Invitation(event_id=event.id, recipient_id=person.id, public_id="zoe-pid", created_at=NOW)
        )
    return Guest("zoe-pid", unsubscribe_token(settings.secret_key, "zoe-pid"))


def test_preview_renders_every_part_for_a_recipient(web: str, guest: Guest, organiser: Any) -> None:
    with httpx.Client(base_url=web, headers=organiser.headers) as client:
        html = client.get(f"/preview/{SLUG}", params={"to": ADDRESS})
        text = client.get(f"/preview/{SLUG}", params={"to": ADDRESS, "part": "text", "lang": "en"})
        subject = client.get(
            f"/preview/{SLUG}", params={"to": ADDRESS, "part": "subject", "kind": "reminder"}
        )
        ics = client.get(f"/preview/{SLUG}", params={"to": ADDRESS, "part": "ics", "kind": "cancellation"})
        eml = client.get(f"/preview/{SLUG}", params={"to": ADDRESS, "part": "eml"})
        sample = client.get(f"/preview/{SLUG}", params={"kind": "waitlist", "part": "text"})
        none = client.get(f"/preview/{SLUG}", params={"kind": "waitlist", "part": "ics"})
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "Geachte burgemeester Van Ĳsbrandt," in html.text
    assert "<style" not in html.text
    assert text.text.startswith("Dear Mayor Van Ĳsbrandt,\n")
    assert subject.text.startswith("Herinnering: Inspiratiebijeenkomst")
    assert str(Calendar.from_ical(ics.content)["METHOD"]) == "CANCEL"
    message = message_from_bytes(eml.content, policy=default)
    assert isinstance(message, EmailMessage)
    assert message["To"].addresses[0].addr_spec == ADDRESS
    assert "plaats 3" in sample.text, "a made-up person, third on the waiting list"
    assert none.status_code == 404


def test_preview_reports_a_template_error_with_its_line(
    web: str, runtime: Any, guest: Guest, organiser: Any
) -> None:
    with db.transaction(runtime.sessions) as session:
        event = get_event(session, SLUG)
        event.extra = {**event.extra, "templates": {"reminder": {"html": {"nl": "<p>\n{% if %}</p>"}}}}
    with httpx.Client(base_url=web, headers=organiser.headers) as client:
        broken = client.get(f"/preview/{SLUG}", params={"kind": "reminder"})
        escape = client.get(f"/preview/{SLUG}", params={"kind": "spam"})
        stranger = client.get(f"/preview/{SLUG}", params={"to": "onbekend@example.org"})
        missing = client.get("/preview/no-such-event")
        wrong_part = client.get(f"/preview/{SLUG}", params={"part": "pdf"})
    assert broken.status_code == 400
    assert "event:reminder/body.nl.html line 2" in broken.text
    assert escape.status_code == 400 and "unknown message kind 'spam'" in escape.text
    assert stranger.status_code == 404 and missing.status_code == 404
    assert wrong_part.status_code == 400


CANCELLED = (
    "Deze bijeenkomst is afgelast. Dit bericht zou haar met een agenda-uitnodiging weer in de agenda van de "
    "ontvanger zetten. Kies het bericht ‘Afgelasting’: dat haalt haar uit de agenda."
)


def test_the_preview_of_a_cancelled_event_says_so_and_shows_only_its_cancellation(
    web: str, runtime: Any, settings: Any, sink: Any, guest: Guest, organiser: Any
) -> None:
    cancel_event(
        runtime.sessions,
        SLUG,
        "De zaal is niet beschikbaar.",
        settings,
        runtime.templates,
        runtime.enqueue,
        NOW,
    )
    with httpx.Client(base_url=web, headers=organiser.headers) as api:
        for kind in ("invitation", "reminder", "update", "rsvp-confirmation"):
            for part in ("html", "ics", "eml"):
                refused = api.get(f"/preview/{SLUG}", params={"kind": kind, "part": part})
                assert (refused.status_code, refused.text) == (400, CANCELLED), (kind, part)
        ics = api.get(f"/preview/{SLUG}", params={"to": ADDRESS, "kind": "cancellation", "part": "ics"})
    assert ics.status_code == 200
    calendar = Calendar.from_ical(ics.content)
    assert str(calendar["METHOD"]) == "CANCEL"
    assert calendar.walk("VEVENT")[0]["SEQUENCE"] == 1

    with httpx.Client(base_url=web) as browser:
        sign_in(browser, organiser)
        page = browser.get(f"/events/{SLUG}/preview")
        assert page.status_code == 400
        assert CANCELLED in page.text and "<iframe" not in page.text
        cancellation = browser.get(f"/events/{SLUG}/preview", params={"kind": "cancellation"})
        assert cancellation.status_code == 200 and "<iframe" in cancellation.text
        token = re.search(r'name="csrf_token" value="([^"]+)"', cancellation.text)
        assert token, cancellation.text
        tested = browser.post(
            f"/events/{SLUG}/preview/test", data={"kind": "invitation", "lang": "nl", "csrf_token": token[1]}
        )
        assert tested.status_code == 400 and CANCELLED in tested.text
        assert stored_messages(sink.directory) == [], "the refused test send reached nobody"

        # The calendar link in an invitation sent before: followed now, it takes the meeting out.
        link = browser.get(f"/r/{make_token(settings.secret_key, guest.public_id, 1)}/invite.ics")
    assert link.status_code == 200
    assert "method=CANCEL" in link.headers["content-type"]
    assert str(Calendar.from_ical(link.content)["METHOD"]) == "CANCEL"


def test_a_template_that_would_allocate_without_bound_is_a_400_on_the_preview(
    web: str, organiser: Any
) -> None:
    """The attack of issue 19: an event file whose template override repeats a text 200 million times."""
    bomb = EVENT_FILE.read_text(encoding="utf-8") + (
        '\n[templates.invitation.text]\nnl = """Beste,\n{{ ("x" * 209715200)|length }}"""\n'
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB; uvicorn serves in this process
    with httpx.Client(base_url=web, headers=organiser.headers, timeout=60) as client:
        loaded = client.post(
            "/api/v1/events", content=bomb.encode(), headers={"Content-Type": "application/toml"}
        )
        assert loaded.status_code == 201, loaded.text
        plain = client.get(f"/preview/{SLUG}", params={"part": "text"})
        page = client.get(f"/events/{SLUG}/preview", params={"kind": "invitation"})
    assert plain.status_code == 400
    assert "event:invitation/body.nl.txt line 2" in plain.text and "at most 100,000" in plain.text
    assert page.status_code == 400 and "at most 100,000" in page.text
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown < 100 * 1024, f"the peak RSS grew by {grown} KiB"


def suppressed(runtime: Any) -> list[tuple[str, str]]:
    with runtime.sessions() as session:
        return [tuple(r) for r in session.execute(select(Suppression.email_key, Suppression.reason))]


def test_unsubscribe_page_changes_nothing_and_one_click_unsubscribes(
    web: str, runtime: Any, guest: Guest
) -> None:
    path = f"/u/{guest.unsubscribe}"
    with httpx.Client(base_url=web) as client:
        page = client.get(path)
        assert page.status_code == 200
        assert ADDRESS in page.text and 'method="post"' in page.text
        assert client.head(path).status_code in (200, 405)
        assert suppressed(runtime) == [], "a GET must never unsubscribe: mail scanners follow links"

        # RFC 8058: the mailbox provider POSTs List-Unsubscribe=One-Click to the https URI.
        done = client.post(path, data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200 and "Afgemeld" in done.text
        assert suppressed(runtime) == [(ADDRESS, "unsubscribed")]
        assert client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
        assert suppressed(runtime) == [(ADDRESS, "unsubscribed")]
        assert "Afgemeld" in client.get(path).text

        forged = client.post(f"/u/{guest.public_id}.forged", data={"List-Unsubscribe": "One-Click"})
        assert forged.status_code == 404


def stored(directory: Any, count: int) -> list[EmailMessage]:
    files = wait_until(lambda: len(stored_messages(directory)) >= count and stored_messages(directory))
    messages = [message_from_bytes(path.read_bytes(), policy=default) for path in files]
    return [m for m in messages if isinstance(m, EmailMessage)]


def test_send_test_goes_through_smtp(settings: Any, sink: Any, guest: Guest) -> None:
    result = run_cli(settings, "send", SLUG, "--test-to", "organisator@example.org", "--kind", "update")
    assert "test update sent to organisator@example.org" in result.stdout
    [message] = stored(sink.directory, 1)
    assert message["To"].addresses[0].addr_spec == "organisator@example.org"
    assert message["Subject"].startswith("[TEST] Gewijzigd: ")
    assert message["Message-ID"].startswith("<test.update.")
    calendar = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
    assert calendar.get_param("method") == "REQUEST"
    with pytest.raises(AssertionError, match="unknown message kind"):
        run_cli(settings, "send", SLUG, "--test-to", "organisator@example.org", "--kind", "spam")


def test_send_test_without_smtp_url_uses_the_local_sink(settings: Any, guest: Guest) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "invites.cli.main", "send", SLUG, "--test-to", "organisator@example.org"],
        env={**settings_env(settings), "INVITES_SMTP_URL": ""},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "the local sink" in result.stdout
    [message] = stored(settings.outbox_dir, 1)
    assert message["Subject"].startswith("[TEST] Uitnodiging: ")


def test_a_scanner_pressing_the_unsubscribe_button_unsubscribes_nobody(
    web: str, runtime: Any, settings: Any, guest: Guest
) -> None:
    path = f"/u/{guest.unsubscribe}"
    with httpx.Client(base_url=web) as client:
        page = client.get(path).text
        fields = dict(re.findall(r'name="(served|evidence)" value="([^"]*)"', page))
        assert set(fields) == {"served", "evidence"}, "the page's form carries its stamp"
        # A gateway presses at once, from its script, with no pointer path before it.
        pressed = client.post(path, data={**fields, "evidence": "js;m=0;k=0;w=0;t=0;p=0"})
        assert pressed.status_code == 202 and "Nog één stap" in pressed.text
        assert suppressed(runtime) == [], "held, not carried out"
        with runtime.sessions() as session:
            held = session.scalars(select(HeldAnswer)).one()
        assert (held.kind, held.state) == (HeldKind.UNSUBSCRIBE, HeldState.HELD) and held.reason
        # The person reads the page and presses the button themselves.
        person = client.post(path, data=as_person(settings, guest.unsubscribe, {}))
        assert person.status_code == 200 and "Afgemeld" in person.text
        assert suppressed(runtime) == [(ADDRESS, "unsubscribed")]
        with runtime.sessions() as session:
            assert session.scalars(select(HeldAnswer.state)).one() == HeldState.REPLACED
