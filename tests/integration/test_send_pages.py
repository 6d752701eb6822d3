"""The organiser's send pages over real HTTP: preview and test send, send with confirmation and live
progress delivered by a real worker, pause and resume, and the reminder rules."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from invites import db
from invites.adapters.sink import stored_messages
from invites.db.models import Campaign, OutboundMessage, Recipient
from invites.domain.eventfile import parse_event_file
from invites.messages.rendering import KINDS
from invites.services import reminders
from invites.services.events import get_event, load_event
from invites.services.imports import import_list
from invites.services.suppression import suppress
from tests.conftest import AUDIENCE_FILE, EVENT_FILE, NOW, sign_in, wait_until

SLUG = "lokaal-samenspel-2018"
MAYORS = 26
EVERYONE = 156


class Page(HTMLParser):
    """The parts of a page the tests read: iframes, forms' hidden fields, and elements' data attributes."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.iframes: list[dict[str, str | None]] = []
        self.data: dict[str, str] = {}
        self.hidden: dict[str, list[str]] = {}
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "iframe":
            self.iframes.append(found)
        if tag == "input" and found.get("type") == "hidden" and found.get("name"):
            self.hidden.setdefault(str(found["name"]), []).append(found.get("value") or "")
        for name, value in attrs:
            if name.startswith("data-") and value is not None:
                self.data.setdefault(name, value)


def csrf(text: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', text)
    assert found, "the page has a form with its CSRF token"
    return found[1]


@pytest.fixture
def loaded(runtime: Any) -> None:
    """The example event with the example audience (156 people, 26 mayors)."""
    with db.transaction(runtime.sessions) as session:
        event = load_event(session, parse_event_file(EVENT_FILE.read_bytes(), str(EVENT_FILE)), NOW).event
        assert (
            import_list(session, event, AUDIENCE_FILE.read_bytes(), AUDIENCE_FILE.name, NOW).accepted == 156
        )


@pytest.fixture
def plain_http(runtime: Any) -> None:
    """The app served over plain HTTP on loopback: its session cookie must not be Secure, or the client
    would never send it back. Set before `web` builds the app."""
    runtime.settings.base_url = "http://invites.example.org"


@pytest.fixture
def client(plain_http: None, web: str, organiser: Any, loaded: None) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=web, timeout=30) as signed_in:
        sign_in(signed_in, organiser)
        yield signed_in


def messages(directory: Path) -> list[EmailMessage]:
    parsed = [message_from_bytes(path.read_bytes(), policy=default) for path in stored_messages(directory)]
    return [m for m in parsed if isinstance(m, EmailMessage)]


def batches_run(directory: Path) -> int:
    """How many delivery batches the workers started by start_worker have finished, from their logs."""
    return sum(
        1
        for path in directory.glob("worker-*.log")
        for line in path.read_text(errors="replace").splitlines()
        if "invites.deliver_batch[" in line and " succeeded in " in line
    )


def test_the_preview_shows_subject_frame_and_text_for_every_kind_and_language(
    client: httpx.Client,
) -> None:
    for kind in KINDS:
        for lang in ("nl", "en"):
            page = client.get(f"/events/{SLUG}/preview", params={"kind": kind, "lang": lang})
            assert page.status_code == 200, (kind, lang, page.text)
            subject = client.get(f"/preview/{SLUG}", params={"kind": kind, "lang": lang, "part": "subject"})
            assert subject.status_code == 200 and subject.text
            assert html.escape(subject.text, quote=False) in page.text
            [frame] = Page(page.text).iframes
            assert frame["src"] == f"/preview/{SLUG}?kind={kind}&lang={lang}&part=html"
            assert "sandbox" in frame and frame["sandbox"] in ("", None)
            assert "mobile" not in str(frame["class"])
            body = client.get(str(frame["src"]))
            assert body.status_code == 200 and body.headers["content-type"].startswith("text/html")
            assert "default-src 'none'" in body.headers["content-security-policy"]

    dutch = client.get(f"/events/{SLUG}/preview", params={"kind": "invitation", "lang": "nl"})
    english = client.get(f"/events/{SLUG}/preview", params={"kind": "invitation", "lang": "en"})
    assert "Uitnodiging: Inspiratiebijeenkomst" in dutch.text and "Invitation: " in english.text
    assert f'href="/preview/{SLUG}?kind=invitation&amp;lang=nl&amp;part=ics"' in dutch.text
    mobile = client.get(f"/events/{SLUG}/preview", params={"kind": "reminder", "width": "mobile"})
    assert "mobile" in str(Page(mobile.text).iframes[0]["class"])


def test_the_preview_names_a_template_error(client: httpx.Client, runtime: Any) -> None:
    with db.transaction(runtime.sessions) as session:
        event = get_event(session, SLUG)
        event.extra = {**event.extra, "templates": {"reminder": {"html": {"nl": "<p>\n{% if %}</p>"}}}}
    broken = client.get(f"/events/{SLUG}/preview", params={"kind": "reminder", "lang": "nl"})
    assert broken.status_code == 400
    assert "event:reminder/body.nl.html line 2" in broken.text
    assert Page(broken.text).iframes == []
    assert client.get("/events/no-such-event/preview").status_code == 404


def test_a_test_send_reaches_only_the_signed_in_organiser(
    client: httpx.Client, organiser: Any, settings: Any
) -> None:
    page = client.get(f"/events/{SLUG}/preview", params={"kind": "update", "lang": "en"})
    form = {"kind": "update", "lang": "en", "csrf_token": csrf(page.text)}
    forged = client.post(f"/events/{SLUG}/preview/test", data={**form, "csrf_token": "wrong"})
    assert forged.status_code == 403
    assert messages(settings.outbox_dir) == [], "a request without its CSRF token sends nothing"

    sent = client.post(f"/events/{SLUG}/preview/test", data=form)
    assert sent.status_code == 303
    assert sent.headers["location"] == f"/events/{SLUG}/preview?kind=update&lang=en&tested=1"
    shown = client.get(sent.headers["location"])
    assert f"Testbericht verstuurd naar {organiser.email}." in shown.text
    [message] = wait_until(lambda: messages(settings.outbox_dir))
    assert [a.addr_spec for a in message["To"].addresses] == [organiser.email]
    assert message["Subject"].startswith("[TEST] Changed: ")
    assert message["Message-ID"].startswith("<test.update.")


def test_a_confirmed_send_reaches_exactly_the_segment_once(
    client: httpx.Client, runtime: Any, settings: Any, start_worker: Any
) -> None:
    with db.transaction(runtime.sessions) as session:
        suppress(session, "stijn.berg@amersfoort.example.nl", "unsubscribed", NOW)
    page = client.get(f"/events/{SLUG}/send", params={"kind": "invitation", "role": "burgemeester"})
    assert page.status_code == 200
    shown = Page(page.text)
    assert shown.data["data-new"] == str(MAYORS - 1)
    assert f"{MAYORS - 1} ontvangers krijgen het bericht „Uitnodiging”." in page.text
    assert "Functie: burgemeester" in page.text
    assert re.search(r'data-plan="suppressed">1<', page.text)
    assert shown.hidden["role"] == ["mayor"] and shown.hidden["confirm"] == [str(MAYORS - 1)]

    unknown = client.get(f"/events/{SLUG}/send", params={"kind": "invitation", "role": "keizer"})
    assert unknown.status_code == 400 and "unknown role &#39;keizer&#39;" in unknown.text

    form = {"kind": "invitation", "role": "mayor", "confirm": str(MAYORS - 1), "csrf_token": csrf(page.text)}
    assert client.post(f"/events/{SLUG}/send", data={**form, "csrf_token": ""}).status_code == 403
    stale = client.post(f"/events/{SLUG}/send", data={**form, "confirm": "3"})
    assert stale.status_code == 409 and "nu 25" in stale.text
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Campaign)) == 0, "nothing starts unconfirmed"

    start_worker()
    started = client.post(f"/events/{SLUG}/send", data=form)
    assert started.status_code == 303
    campaign_url = started.headers["location"]
    assert re.fullmatch(rf"/events/{SLUG}/campaigns/\d+", campaign_url)
    campaign = client.get(campaign_url)
    assert campaign.status_code == 200 and "<progress" in campaign.text
    assert f'href="{campaign_url}"' in campaign.text, "a refresh link for when there is no JavaScript"

    def finished() -> Page | None:
        fragment = Page(client.get(f"{campaign_url}/progress").text)
        return fragment if fragment.data["data-sent"] == fragment.data["data-total"] else None

    done = wait_until(finished, timeout=90, what="the worker to deliver the campaign")
    assert done.data["data-total"] == str(MAYORS - 1)
    assert "data-poll" not in done.data, "a finished campaign stops polling"
    delivered = messages(settings.outbox_dir)
    assert len(delivered) == MAYORS - 1
    with runtime.sessions() as session:
        mayors = set(session.scalars(select(Recipient.email_key).where(Recipient.role_key == "mayor")))
    assert {m["To"].addresses[0].addr_spec.lower() for m in delivered} == mayors - {
        "stijn.berg@amersfoort.example.nl"
    }

    again = client.get(f"/events/{SLUG}/send", params={"kind": "invitation", "role": "mayor"})
    assert Page(again.text).data["data-new"] == "0"
    assert re.search(rf'data-plan="already">{MAYORS - 1}<', again.text)
    assert "confirm" not in Page(again.text).hidden
    repeated = client.post(f"/events/{SLUG}/send", data={**form, "confirm": "0"})
    assert repeated.status_code == 400
    listing = client.get(f"/events/{SLUG}/send")
    assert f'href="{campaign_url}"' in listing.text and "25 van 25" in listing.text
    assert len(messages(settings.outbox_dir)) == MAYORS - 1, "nobody got it twice"


def test_a_paused_campaign_sends_nothing_until_resumed(
    client: httpx.Client, runtime: Any, settings: Any, start_worker: Any, tmp_path: Path
) -> None:
    page = client.get(f"/events/{SLUG}/send", params={"kind": "invitation"})
    assert Page(page.text).data["data-new"] == str(EVERYONE)
    token = csrf(page.text)
    started = client.post(
        f"/events/{SLUG}/send", data={"kind": "invitation", "confirm": str(EVERYONE), "csrf_token": token}
    )
    campaign_url = started.headers["location"]
    paused = client.post(f"{campaign_url}/pause", data={"csrf_token": token})
    assert paused.status_code == 303 and paused.headers["location"] == f"{campaign_url}?done=pause"
    shown = client.get(paused.headers["location"])
    assert "De campagne is gepauzeerd." in shown.text and f'action="{campaign_url}/resume"' in shown.text
    assert client.post(f"{campaign_url}/pause", data={"csrf_token": token}).status_code == 409

    # The worker takes the two batches the send handed on, and leaves every row of the paused campaign.
    start_worker()
    wait_until(
        lambda: batches_run(tmp_path) >= 2, timeout=60, what="the worker to run the campaign's batches"
    )
    fragment = Page(client.get(f"{campaign_url}/progress").text)
    assert (fragment.data["data-sent"], fragment.data["data-state"]) == ("0", "paused")
    assert messages(settings.outbox_dir) == []

    resumed = client.post(f"{campaign_url}/resume", data={"csrf_token": token})
    assert resumed.status_code == 303
    wait_until(
        lambda: Page(client.get(f"{campaign_url}/progress").text).data["data-sent"] == str(EVERYONE),
        timeout=120,
        what="the resumed campaign to be delivered",
    )
    assert len(messages(settings.outbox_dir)) == EVERYONE
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(OutboundMessage)) == EVERYONE


def test_cancel_stops_a_campaign_for_good(client: httpx.Client, runtime: Any) -> None:
    page = client.get(f"/events/{SLUG}/send", params={"kind": "invitation", "role": "wethouder"})
    count = Page(page.text).data["data-new"]
    assert int(count) > 0
    token = csrf(page.text)
    started = client.post(
        f"/events/{SLUG}/send",
        data={"kind": "invitation", "role": "alderman", "confirm": count, "csrf_token": token},
    )
    campaign_url = started.headers["location"]
    client.post(f"{campaign_url}/pause", data={"csrf_token": token})
    cancelled = client.post(f"{campaign_url}/cancel", data={"csrf_token": token}, follow_redirects=True)
    assert "De campagne is geannuleerd." in cancelled.text
    fragment = Page(client.get(f"{campaign_url}/progress").text)
    assert fragment.data["data-state"] == "cancelled" and "data-poll" not in fragment.data
    with runtime.sessions() as session:
        statuses = set(session.scalars(select(OutboundMessage.status)))
    assert {str(s) for s in statuses} == {"cancelled"}
    assert client.post(f"{campaign_url}/resume", data={"csrf_token": token}).status_code == 409
    assert client.get(f"/events/{SLUG}/campaigns/999999").status_code == 404


def test_reminder_rules_are_added_changed_and_deleted(client: httpx.Client, runtime: Any) -> None:
    page = client.get(f"/events/{SLUG}/reminders")
    assert page.status_code == 200
    assert 'data-rule="no-answer-7d"' in page.text and 'data-rule="practical-1d"' in page.text
    token = csrf(page.text)
    rule = {"name": "laatste-kans", "when": "-2d 09:00", "audience": "no-answer", "template": "reminder"}

    added = client.post(f"/events/{SLUG}/reminders", data={**rule, "enabled": "true", "csrf_token": token})
    assert added.status_code == 303
    shown = client.get(added.headers["location"])
    assert "Herinnering laatste-kans is opgeslagen." in shown.text
    assert "-2d 09:00" in shown.text and "11-02-2018 09:00" in shown.text

    changed = client.post(
        f"/events/{SLUG}/reminders",
        data={**rule, "when": "-3d", "audience": ["accepted", "tentative"], "csrf_token": token},
    )
    assert changed.status_code == 303
    with runtime.sessions() as session:
        saved = {r.name: r for r in reminders.event_rules(session, get_event(session, SLUG))}
        assert (saved["laatste-kans"].offset, saved["laatste-kans"].enabled) == ("-3d", False)
        assert saved["laatste-kans"].audience == "accepted,tentative"
    edit = client.get(f"/events/{SLUG}/reminders", params={"edit": "laatste-kans"})
    assert 'value="-3d"' in edit.text and "Uitgeschakeld" in edit.text

    invalid = client.post(f"/events/{SLUG}/reminders", data={**rule, "when": "morgen", "csrf_token": token})
    assert invalid.status_code == 400
    assert "&#39;morgen&#39; is neither an offset" in invalid.text
    assert 'value="morgen"' in invalid.text and 'aria-invalid="true"' in invalid.text

    forged = client.post(f"/events/{SLUG}/reminders/delete", data={"name": "laatste-kans"})
    assert forged.status_code == 403
    deleted = client.post(
        f"/events/{SLUG}/reminders/delete", data={"name": "laatste-kans", "csrf_token": token}
    )
    assert deleted.status_code == 303
    assert 'data-rule="laatste-kans"' not in client.get(deleted.headers["location"]).text
    missing = client.post(f"/events/{SLUG}/reminders/delete", data={"name": "nope", "csrf_token": token})
    assert missing.status_code == 404


def test_the_pages_need_a_signed_in_organiser(web: str, loaded: None) -> None:
    with httpx.Client(base_url=web) as anonymous:
        for path in ("preview", "send", "reminders"):
            response = anonymous.get(f"/events/{SLUG}/{path}")
            assert response.status_code == 303 and response.headers["location"].startswith("/login")
