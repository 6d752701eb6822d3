"""The web app served by a real uvicorn, over real HTTP, against SQLite and PostgreSQL."""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from icalendar import Calendar
from sqlalchemy import select

from invites import db
from invites.adapters.sink import stored_messages
from invites.db.models import AnswerHistory, Invitation, Recipient
from invites.domain.eventfile import parse_event_file
from invites.domain.states import Answer, AnswerSource
from invites.domain.tokens import make_token
from invites.messages.compose import Composer
from invites.readmodels.status import event_status
from invites.services.events import get_event, load_event
from invites.services.imports import import_list
from tests.conftest import AUDIENCE_FILE, EVENT_FILE, NOW, as_person, wait_until

SLUG = "lokaal-samenspel-2018"
TITLE = "Inspiratiebijeenkomst Lokaal samenspel in verandering"
ADDRESS = "stijn.berg@amersfoort.example.nl"
NAME = "Stijn Berg"
NOT_FOUND = "Deze pagina bestaat niet"
AGENT = "Mozilla/5.0 (X11; Linux x86_64) invites-test/1.0"


@dataclass(frozen=True)
class Guest:
    invitation_id: int
    public_id: str
    token_version: int
    token: str


@pytest.fixture
def guest(runtime: Any, settings: Any) -> Guest:
    """The example event with the example audience; one invited person's token."""
    with db.transaction(runtime.sessions) as session:
        event = load_event(session, parse_event_file(EVENT_FILE.read_bytes(), str(EVENT_FILE)), NOW).event
        assert (
            import_list(session, event, AUDIENCE_FILE.read_bytes(), AUDIENCE_FILE.name, NOW).accepted == 156
        )
    with runtime.sessions() as session:
        invitation = session.scalars(
            select(Invitation).join(Recipient).where(Recipient.email_key == ADDRESS)
        ).one()
        assert invitation.recipient.display_name == NAME
        return Guest(
            invitation.id,
            invitation.public_id,
            invitation.token_version,
            make_token(settings.secret_key, invitation.public_id, invitation.token_version),
        )


class Page(HTMLParser):
    """The parts of a page the tests look at: the <html> lang, the answer buttons, iframes."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.lang = ""
        self.buttons: list[dict[str, str | None]] = []
        self.iframes: list[dict[str, str | None]] = []
        self.counts: dict[str, str] = {}
        self._count: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "html":
            self.lang = found.get("lang") or ""
        elif tag == "button":
            self.buttons.append(found)
        elif tag == "iframe":
            self.iframes.append(found)
        elif found.get("data-count"):
            self._count = found["data-count"]

    def handle_data(self, data: str) -> None:
        if self._count:
            self.counts[self._count] = data.strip()
            self._count = None


def answers(page: Page) -> dict[str, dict[str, str | None]]:
    return {str(b["value"]): b for b in page.buttons if b.get("name") == "answer"}


def recorded(runtime: Any, guest: Guest) -> tuple[Answer | None, list[tuple[Answer, AnswerSource, str]]]:
    with runtime.sessions() as session:
        invitation = session.get(Invitation, guest.invitation_id)
        assert invitation is not None
        history = session.execute(
            select(AnswerHistory.answer, AnswerHistory.source, AnswerHistory.user_agent)
            .where(AnswerHistory.invitation_id == guest.invitation_id)
            .order_by(AnswerHistory.id)
        ).all()
        return invitation.answer, [tuple(row) for row in history]


def composed_invitation(runtime: Any, settings: Any) -> bytes:
    with runtime.sessions() as session:
        invitation = session.scalars(
            select(Invitation).join(Recipient).where(Recipient.email_key == ADDRESS)
        ).one()
        composer = Composer(
            get_event(session, SLUG),
            "invitation",
            runtime.templates,
            sender=settings.sender,
            base_url=settings.base_url,
            secret=settings.secret_key,
            now=NOW,
        )
        return composer.compose(invitation.recipient, invitation).data


def test_healthz(web: str) -> None:
    with httpx.Client(base_url=web) as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_the_rsvp_page_shows_the_invitation_and_records_nothing(web: str, runtime: Any, guest: Guest) -> None:
    with httpx.Client(base_url=web) as client:
        dutch = client.get(f"/r/{guest.token}")
        english = client.get(f"/r/{guest.token}", params={"lang": "en"})
        preselected = client.get(f"/r/{guest.token}", params={"answer": "accepted"})
        head = client.head(f"/r/{guest.token}")

    assert dutch.status_code == 200
    assert dutch.headers["content-type"].startswith("text/html")
    page = Page(dutch.text)
    assert page.lang == "nl"
    assert TITLE in dutch.text
    assert "dinsdag 13 februari 2018" in dutch.text
    assert f"Komt u, {NAME}?" in dutch.text
    assert "U hebt nog niet geantwoord." in dutch.text
    buttons = answers(page)
    assert {value: b["type"] for value, b in buttons.items()} == {
        "accepted": "submit",
        "tentative": "submit",
        "declined": "submit",
    }
    assert all(b["class"] == "" and "autofocus" not in b for b in buttons.values())
    for label in ("Ja, ik kom", "Misschien", "Nee, ik kan niet"):
        assert label in dutch.text

    assert english.status_code == 200
    assert Page(english.text).lang == "en"
    assert "Tuesday 13 February 2018" in english.text
    assert f"Will you attend, {NAME}?" in english.text
    for label in ("Yes, I will attend", "Maybe", "No, I can&#39;t"):
        assert label in english.text

    assert preselected.status_code == 200
    chosen = answers(Page(preselected.text))
    assert chosen["accepted"]["class"] == "chosen" and "autofocus" in chosen["accepted"]
    assert all(chosen[v]["class"] == "" and "autofocus" not in chosen[v] for v in ("tentative", "declined"))
    assert "U hebt nog niet geantwoord." in preselected.text

    assert head.status_code == 200
    assert head.content == b""

    assert recorded(runtime, guest) == (None, []), "a GET or HEAD must never record an answer"


def test_posting_an_answer_records_it_with_its_history(
    web: str, runtime: Any, settings: Any, guest: Guest
) -> None:
    path = f"/r/{guest.token}"
    with httpx.Client(base_url=web, headers={"User-Agent": AGENT}) as client:
        accepted = client.post(
            path, data=as_person(settings, guest.token, {"answer": "accepted"}), follow_redirects=False
        )
        assert accepted.status_code == 303
        assert accepted.headers["location"] == f"{path}?saved=1"
        assert recorded(runtime, guest) == (Answer.ACCEPTED, [(Answer.ACCEPTED, AnswerSource.WEB, AGENT)])

        saved = client.get(accepted.headers["location"])
        assert saved.status_code == 200
        assert "Dank u wel, uw antwoord is opgeslagen." in saved.text
        assert answers(Page(saved.text))["accepted"]["class"] == "chosen"

        # A later GET that suggests another answer (a scanner following the "decline" link) changes nothing.
        suggested = client.get(path, params={"answer": "declined"})
        assert suggested.status_code == 200
        assert answers(Page(suggested.text))["declined"]["class"] == "chosen"
        assert len(recorded(runtime, guest)[1]) == 1

        declined = client.post(
            path,
            data=as_person(settings, guest.token, {"answer": "declined", "lang": "en"}),
            follow_redirects=False,
        )
        assert declined.status_code == 303
        assert declined.headers["location"] == f"{path}?saved=1&lang=en"
        assert recorded(runtime, guest) == (
            Answer.DECLINED,
            [(Answer.ACCEPTED, AnswerSource.WEB, AGENT), (Answer.DECLINED, AnswerSource.WEB, AGENT)],
        )

        bogus = client.post(
            path, data=as_person(settings, guest.token, {"answer": "bogus"}), follow_redirects=False
        )
        assert bogus.status_code == 400
        assert "bogus" in bogus.text
        assert len(recorded(runtime, guest)[1]) == 2
        assert recorded(runtime, guest)[0] == Answer.DECLINED


def forged_tokens(guest: Guest) -> dict[str, str]:
    good_mac = guest.token.partition(".")[2]
    return {
        "random": "dit-is-geen-token",
        "random with a dot": "abcdefghijklmnop.qrstuvwxyz012345",
        "wrong mac": f"{guest.public_id}.{'A' * len(good_mac)}",
        "other secret": make_token("another-secret", guest.public_id, guest.token_version),
        "empty mac": f"{guest.public_id}.",
        "empty mac, short id": "abc.",
        "empty public id": f".{good_mac}",
        "very long": f"{guest.token}{'x' * 5000}",
    }


def test_forged_tokens_find_nothing_and_tell_nothing(
    web: str, runtime: Any, settings: Any, guest: Guest
) -> None:
    with httpx.Client(base_url=web) as client:
        for name, token in forged_tokens(guest).items():
            for method in ("GET", "POST"):
                response = client.request(
                    method, f"/r/{token}", data={"answer": "accepted"} if method == "POST" else None
                )
                assert response.status_code == 404, (name, method)
                assert NOT_FOUND in response.text, (name, method)
                assert Page(response.text).lang == "nl"
                assert ADDRESS not in response.text and NAME not in response.text, (name, method)
            ics = client.get(f"/r/{token}/invite.ics")
            assert ics.status_code == 404, name
            assert ADDRESS not in ics.text, name
    assert recorded(runtime, guest) == (None, [])


def test_bumping_the_token_version_revokes_the_old_link(
    web: str, runtime: Any, settings: Any, guest: Guest
) -> None:
    with httpx.Client(base_url=web) as client:
        assert client.get(f"/r/{guest.token}").status_code == 200
        with db.transaction(runtime.sessions) as session:
            invitation = session.get(Invitation, guest.invitation_id)
            assert invitation is not None
            invitation.token_version += 1
        new_token = make_token(settings.secret_key, guest.public_id, guest.token_version + 1)

        old = client.get(f"/r/{guest.token}")
        assert old.status_code == 404
        assert NOT_FOUND in old.text and ADDRESS not in old.text and NAME not in old.text
        posted = client.post(f"/r/{guest.token}", data={"answer": "accepted"})
        assert posted.status_code == 404
        assert client.get(f"/r/{guest.token}/invite.ics").status_code == 404
        assert recorded(runtime, guest) == (None, [])

        new = client.get(f"/r/{new_token}")
        assert new.status_code == 200
        assert NAME in new.text


def test_the_calendar_file_invites_the_guest(web: str, guest: Guest) -> None:
    with httpx.Client(base_url=web) as client:
        response = client.get(f"/r/{guest.token}/invite.ics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/calendar")
    assert "invite.ics" in response.headers["content-disposition"]
    calendar = Calendar.from_ical(response.content)
    assert calendar["METHOD"] == "REQUEST"
    vevent = next(iter(calendar.walk("VEVENT")))
    assert str(vevent["SUMMARY"]) == TITLE
    assert vevent.decoded("DTSTART").isoformat() == "2018-02-13T19:30:00+01:00"
    attendee = vevent["ATTENDEE"]
    assert str(attendee).removeprefix("mailto:").lower() == ADDRESS


def test_the_outbox_shows_what_the_sink_received(
    web: str, runtime: Any, settings: Any, sink: Any, guest: Guest, organiser: Any
) -> None:
    data = composed_invitation(runtime, settings)
    with smtplib.SMTP("127.0.0.1", sink.port) as smtp:
        smtp.sendmail("uitnodigingen@example.org", [ADDRESS], data)
    stored = wait_until(lambda: stored_messages(sink.directory), timeout=10, what="the sink to store it")
    assert len(stored) == 1

    with httpx.Client(base_url=web, headers=organiser.headers) as client:
        listing = client.get("/outbox")
    assert listing.status_code == 200
    assert "<p>1</p>" in listing.text, f"the sink stored {stored}, the outbox reads {settings.outbox_dir}"
    assert f'href="/outbox/{stored[0].name}"' in listing.text


def test_the_outbox_shows_stored_messages_safely(
    web: str, runtime: Any, settings: Any, guest: Guest, organiser: Any
) -> None:
    data = composed_invitation(runtime, settings)
    subject = str(message_from_bytes(data, policy=default)["Subject"])
    settings.outbox_dir.mkdir(parents=True, exist_ok=True)
    (settings.outbox_dir / "x.eml").write_bytes(data)
    (settings.outbox_dir / "notes.txt").write_bytes(data)
    secret = b"Subject: not for the web\r\n\r\nsecret body\r\n"
    (settings.var_dir / "leak.eml").write_bytes(secret)

    with httpx.Client(base_url=web, headers=organiser.headers) as client:
        listing = client.get("/outbox")
        message = client.get("/outbox/x.eml")
        html = client.get("/outbox/x.eml/html")
        raw = client.get("/outbox/x.eml", params={"raw": 1})
        refused = {
            path: client.get(path)
            for path in (
                "/outbox/notes.txt",
                "/outbox/missing.eml",
                "/outbox/../etc",
                "/outbox/..%2Fleak.eml",
                "/outbox/%2E%2E%2Fleak.eml",
                "/outbox/%2E%2E",
            )
        }

    assert listing.status_code == 200
    assert "<p>1</p>" in listing.text
    assert subject in listing.text and ADDRESS in listing.text
    assert 'href="/outbox/x.eml"' in listing.text

    assert message.status_code == 200
    assert subject in message.text
    frames = Page(message.text).iframes
    assert len(frames) == 1
    # Sandboxed without allow-scripts or allow-same-origin: the message can run nothing and reach nothing.
    sandbox = (frames[0].get("sandbox") or "").split()
    assert "sandbox" in frames[0] and "allow-scripts" not in sandbox and "allow-same-origin" not in sandbox
    assert frames[0]["src"] == "/outbox/x.eml/html"
    parsed = message_from_bytes(data, policy=default)
    assert isinstance(parsed, EmailMessage)
    html_part = parsed.get_body(("html",))
    assert html_part is not None
    assert html.status_code == 200 and html.text == html_part.get_content()
    assert "default-src 'none'" in html.headers["content-security-policy"]

    assert raw.status_code == 200
    assert raw.content == data

    for path, response in refused.items():
        assert response.status_code == 404, path
        assert b"secret body" not in response.content, path
        assert subject.encode() not in response.content, path


def test_the_event_page_and_the_status_api_count_the_answers(
    web: str, runtime: Any, settings: Any, guest: Guest, organiser: Any
) -> None:
    person = as_person(settings, guest.token, {"answer": "accepted"})
    with httpx.Client(base_url=web) as client:
        assert client.post(f"/r/{guest.token}", data=person).status_code == 303
    with httpx.Client(base_url=web, headers=organiser.headers) as client:
        page = client.get(f"/events/{SLUG}")
        api = client.get(f"/api/v1/events/{SLUG}/status")
        index = client.get("/")
        missing_page = client.get("/events/bestaat-niet")
        missing_api = client.get("/api/v1/events/bestaat-niet/status")

    assert page.status_code == 200
    assert TITLE in page.text
    assert "dinsdag 13 februari 2018" in page.text
    assert Page(page.text).counts == {
        "invited": "156",
        "sent": "0",
        "queued": "0",
        "deferred": "0",
        "failed": "0",
        "accepted": "1",
        "tentative": "0",
        "declined": "0",
        "no_answer": "155",
    }

    assert api.status_code == 200
    with runtime.sessions() as session:
        assert api.json() == event_status(session, get_event(session, SLUG))
    expected = {
        "event": SLUG,
        "title": TITLE,
        "status": "published",
        "sequence": 0,
        "invited": 156,
        "queued": 0,
        "sent": 0,
        "deferred": 0,
        "failed": 0,
        "accepted": 1,
        "declined": 0,
        "tentative": 0,
        "no_answer": 155,
    }
    assert {key: api.json().get(key) for key in expected} == expected

    assert index.status_code == 200
    assert f'href="/events/{SLUG}"' in index.text

    assert missing_page.status_code == 404
    assert NOT_FOUND in missing_page.text
    assert missing_api.status_code == 404
    assert missing_api.json() == {"detail": "no event with slug 'bestaat-niet'"}
