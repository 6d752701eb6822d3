"""Link detonation, played by a real browser on both sides: Debian's Chromium driven by Playwright.

A mail gateway (Safe Links, Mimecast) opens every link of a delivered invitation within seconds, with
`navigator.webdriver` hidden and an ordinary browser's user agent, and presses every button of every page:
by a trusted click, by `element.click()` and by `form.requestSubmit()`, then the buttons of the pages that
follow. Nothing of that may count or send mail; the overview shows it as held. A person who comes later,
moves the pointer and presses Accept is counted at once, and so is a person with JavaScript off after the
one extra step.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from invites import db
from invites.adapters.sink import stored_messages
from invites.db.models import Event, HeldAnswer, Invitation, OutboundMessage, Recipient, Suppression
from invites.domain.eventfile import parse_event_file
from invites.domain.states import Answer, HeldState
from invites.readmodels.status import event_status
from invites.services import campaigns
from invites.services.events import load_event
from invites.services.imports import import_list
from tests.conftest import EVENT_FILE, SignedInOrganiser, wait_until
from tests.e2e.conftest import CHROMIUM
from tests.e2e.test_browser import PERSON_AGENT, Journey, read_like_a_person

playwright = pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium package is not installed"),
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

AUDIENCE = (
    b"email;naam\nanne@example.nl;Anne de Vries\nbram@example.nl;Bram Bakker\ncarla@example.nl;Carla Smit\n"
)
EDGE = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0"
)
HIDE_WEBDRIVER = "Object.defineProperty(Navigator.prototype, 'webdriver', { get: () => undefined });"
PRESSES = {
    "trusted click": lambda button: button.click(),
    "element.click()": lambda button: button.evaluate("b => b.click()"),
    "form.requestSubmit()": lambda button: button.evaluate("b => b.form.requestSubmit(b)"),
}


def invitation_for(sink: Any, address: str) -> EmailMessage:
    for path in stored_messages(sink.directory):
        message = message_from_bytes(Path(path).read_bytes(), policy=default)
        assert isinstance(message, EmailMessage)
        if address in str(message["To"]):
            return message
    raise AssertionError(f"no message to {address} in the sink")


def links(message: EmailMessage, site: str) -> list[str]:
    """Every link of the message's HTML that leads to the service, as a gateway would open them."""
    part = message.get_body(("html",))
    assert part is not None
    html = part.get_content()
    found = dict.fromkeys(re.findall(r'href="([^"]+)"', html))
    return [link.replace("&amp;", "&") for link in found if link.startswith(site)]


def answers(runtime: Any) -> dict[str, Answer | None]:
    with runtime.sessions() as session:
        rows = session.execute(
            select(Recipient.email_key, Invitation.answer).join(
                Invitation, Invitation.recipient_id == Recipient.id
            )
        )
        return dict(rows.all())


def counts(runtime: Any) -> dict[str, int]:
    with runtime.sessions() as session:
        status = event_status(session, session.scalars(select(Event)).one())
        return {key: status[key] for key in ("accepted", "declined", "tentative", "no_answer")}


def outbox_rows(runtime: Any) -> int:
    with runtime.sessions() as session:
        return int(session.scalar(select(func.count(OutboundMessage.id))) or 0)


def detonate(context: Any, urls: list[str], means: tuple[str, ...] = tuple(PRESSES)) -> int:
    """Press every button of every page behind `urls`, by each of the `means`, and the buttons of the page
    each press leads to; returns how many presses were made."""
    page = context.new_page()
    presses = 0
    for url in urls:
        if url.endswith(".ics"):
            continue  # a download, not a page
        for press in (PRESSES[name] for name in means):
            page.goto(url)
            for index in range(page.locator("form button").count()):
                page.goto(url)
                with page.expect_navigation():
                    press(page.locator("form button").nth(index))
                presses += 1
                # The page a press leads to has buttons too (the confirmation step): press them as well.
                if page.locator("form button").count():
                    with page.expect_navigation():
                        press(page.locator("form button").first)
                    presses += 1
    page.close()
    return presses


def test_a_detonation_changes_no_count_and_a_person_is_counted(
    site: str, browser: Any, runtime: Any, sink: Any, organiser: SignedInOrganiser, tmp_path: Path
) -> None:
    with db.transaction(runtime.sessions) as session:
        event = load_event(session, parse_event_file(EVENT_FILE.read_bytes()), datetime.now(UTC)).event
        import_list(session, event, AUDIENCE, "lijst.csv", datetime.now(UTC))
        slug = event.slug
    started = campaigns.start_campaign(
        runtime.sessions, slug, "invitation", runtime.settings, runtime.templates, datetime.now(UTC)
    )
    campaigns.enqueue_queued(runtime.sessions, started.scope, runtime.enqueue, 100)
    wait_until(lambda: len(stored_messages(sink.directory)) == 3, timeout=90, what="three invitations")
    delivered = outbox_rows(runtime)
    before = counts(runtime)
    assert before["no_answer"] == 3

    # The gateway, seconds after delivery: every link of Anne's invitation, every button, all three ways.
    gateway = browser.new_context(user_agent=EDGE, locale="nl-NL")
    gateway.add_init_script(HIDE_WEBDRIVER)
    anne_links = links(invitation_for(sink, "anne@example.nl"), site)
    assert any("/r/" in link for link in anne_links) and any("/u/" in link for link in anne_links)
    presses = detonate(gateway, anne_links)
    assert presses >= 12, f"the gateway pressed {presses} buttons"
    assert counts(runtime) == before, "a detonation changes no count"
    assert answers(runtime)["anne@example.nl"] is None
    assert outbox_rows(runtime) == delivered, "a detonation queues no mail"
    with runtime.sessions() as session:
        assert session.scalar(select(func.count(Suppression.id))) == 0, "nor unsubscribes anyone"
        held = session.scalars(select(HeldAnswer).where(HeldAnswer.state == HeldState.HELD)).all()
    assert {row.kind.value for row in held} == {"answer", "unsubscribe"}, (
        "its last press of each kind is held"
    )
    assert all(row.reason for row in held)

    # The organiser sees it under "Te controleren", with the reason.
    desk = browser.new_context(base_url=site, locale="nl-NL")
    overview = desk.new_page()
    overview.goto("/login")
    overview.get_by_label("E-mailadres").fill(organiser.email)
    overview.get_by_label("Wachtwoord").fill(organiser.password)
    overview.get_by_role("button", name="Inloggen").click()
    overview.goto(f"/events/{slug}")
    review = overview.locator("#held").locator("xpath=..")
    assert "anne@example.nl" in review.inner_text()
    assert held[0].reason in review.inner_text()
    Journey(overview, tmp_path).accessible("the overview with held answers")

    # A minute later, Bram opens his invitation. The gateway checks the link first ("time of click"),
    # then Bram reads, moves the pointer and presses Accept: counted at once, his confirmation queued.
    with db.transaction(runtime.sessions) as session:
        session.execute(update(OutboundMessage).values(sent_at=datetime.now(UTC) - timedelta(seconds=70)))
    bram_link = next(link for link in links(invitation_for(sink, "bram@example.nl"), site) if "/r/" in link)
    # (One means only: the link's rate limit, 30 a minute, would otherwise keep Bram out for a minute.)
    detonate(gateway, [bram_link], means=("trusted click",))
    assert answers(runtime)["bram@example.nl"] is None
    person = browser.new_context(user_agent=PERSON_AGENT, locale="nl-NL")
    page = person.new_page()
    page.goto(bram_link.split("?")[0])
    read_like_a_person(page)
    page.get_by_role("button", name="Ja, ik kom").click()
    page.wait_for_load_state()
    with runtime.sessions() as session:
        print(
            "DEBUG",
            [
                (h.reason, h.evidence)
                for h in session.scalars(select(HeldAnswer).order_by(HeldAnswer.id.desc()).limit(1))
            ],
        )
    page.wait_for_url(re.compile(r"saved=1"))
    assert answers(runtime)["bram@example.nl"] == Answer.ACCEPTED
    assert counts(runtime) == {**before, "accepted": 1, "no_answer": 2}
    wait_until(lambda: outbox_rows(runtime) == delivered + 1, timeout=10, what="Bram's confirmation queued")
    with runtime.sessions() as session:
        bram_held = session.scalars(
            select(HeldAnswer.state)
            .join(Invitation, Invitation.id == HeldAnswer.invitation_id)
            .join(Recipient, Recipient.id == Invitation.recipient_id)
            .where(Recipient.email_key == "bram@example.nl", HeldAnswer.kind == "answer")
        ).all()
    assert bram_held and HeldState.HELD not in bram_held, "his own answer replaced the gateway's"

    # Carla has JavaScript off: her press asks for one more step, and the confirmation counts.
    no_script = browser.new_context(user_agent=PERSON_AGENT, locale="nl-NL", java_script_enabled=False)
    page = no_script.new_page()
    carla_link = next(link for link in links(invitation_for(sink, "carla@example.nl"), site) if "/r/" in link)
    page.goto(carla_link.split("?")[0])
    page.wait_for_timeout(1200)
    page.get_by_role("button", name="Nee, ik kan niet").click()
    page.wait_for_load_state()
    assert "Nog één stap" in page.content()
    assert answers(runtime)["carla@example.nl"] is None, "not counted before the confirmation"
    page.wait_for_timeout(1200)
    page.get_by_role("button", name=re.compile("Bevestigen")).click()
    page.wait_for_url(re.compile(r"saved=1"))
    assert answers(runtime)["carla@example.nl"] == Answer.DECLINED
    assert counts(runtime) == {**before, "accepted": 1, "declined": 1, "no_answer": 1}

    # The organiser rejects the gateway's held answer for Anne: it stays out of every count.
    overview.goto(f"/events/{slug}")
    row = overview.locator("#held").locator("xpath=..").locator("tr", has_text="anne@example.nl").first
    with overview.expect_navigation():
        row.get_by_role("button", name="Afwijzen").click()
    assert answers(runtime)["anne@example.nl"] is None
    assert counts(runtime) == {**before, "accepted": 1, "declined": 1, "no_answer": 1}
    for context in (gateway, desk, person, no_script):
        context.close()
