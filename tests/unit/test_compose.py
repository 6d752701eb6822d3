"""Composing one message: the MIME tree of an iMIP invitation, its headers, and what the bodies say."""

from __future__ import annotations

import email
import email.header
import email.policy
import email.utils
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim  # type: ignore[import-untyped]
import pytest
from icalendar import Calendar
from sqlalchemy.orm import Session

from invites import db
from invites.db.models import Base, Event, Invitation, Recipient
from invites.domain.errors import InputError
from invites.domain.eventfile import parse_event_file
from invites.domain.reference import LANGUAGES
from invites.domain.states import Answer, EventStatus
from invites.domain.tokens import make_token, new_public_id, unsubscribe_token
from invites.messages.compose import (
    CancelledEvent,
    Composed,
    Composer,
    DkimKey,
    address_header,
    default_unsubscribe_mailto,
    message_id,
    sender_domain,
)
from invites.messages.rendering import KINDS, TemplateSet
from invites.services.events import load_event
from tests.conftest import EVENT_FILE, make_recipient

NOW = datetime(2018, 1, 15, 9, 0, tzinfo=UTC)
SENDER = "VNG afdeling Utrecht <uitnodigingen@example.org>"
BASE_URL = "https://invites.example.org"
SECRET = "test-secret"
TITLE = "Inspiratiebijeenkomst Lokaal samenspel in verandering"


@dataclass
class World:
    session: Session
    event: Event
    templates: TemplateSet
    zoe: Recipient
    zoe_invitation: Invitation
    ann: Recipient
    ann_invitation: Invitation

    def composer(self, kind: str = "invitation", **overrides: Any) -> Composer:
        options: dict[str, Any] = {"sender": SENDER, "base_url": BASE_URL, "secret": SECRET, "now": NOW}
        options.update(overrides)
        return Composer(self.event, kind, self.templates, **options)


def recipient(**fields: Any) -> Recipient:
    person: Recipient = make_recipient(**fields)
    return person


def invite(session: Session, event: Event, person: Recipient) -> Invitation:
    session.add(person)
    session.flush()
    invitation = Invitation(
        event_id=event.id, recipient_id=person.id, public_id=new_public_id(), token_version=1, created_at=NOW
    )
    session.add(invitation)
    session.flush()
    return invitation


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    engine = db.make_engine("sqlite://")
    Base.metadata.create_all(engine)
    with db.session_factory(engine)() as session:
        event = load_event(session, parse_event_file(EVENT_FILE.read_bytes(), "example"), NOW).event
        zoe = recipient(
            email="zoe@example.org",
            email_key="zoe@example.org",
            first_name="Zoë",
            name_prefix="van",
            last_name="Ĳsbrandt",
            display_name="Zoë van Ĳsbrandt",
            role_key="mayor",
            role_label="Burgemeester",
            municipality_code="GM0353",
            organisation="Gemeente Ĳsselstein",
        )
        ann = recipient(
            email="ann@example.org",
            email_key="ann@example.org",
            first_name="Ann",
            last_name="Smith",
            display_name="Ann Smith",
            role_key="council_member",
            municipality_code="GM0344",
            language="en",
        )
        yield World(
            session, event, TemplateSet(), zoe, invite(session, event, zoe), ann, invite(session, event, ann)
        )
    engine.dispose()


def parse(composed: Composed) -> EmailMessage:
    message = email.message_from_bytes(composed.data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def header_block(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


def tree(part: EmailMessage) -> Any:
    if part.is_multipart():
        return (part.get_content_type(), [tree(sub) for sub in part.iter_parts()])
    return part.get_content_type()


def parts(message: EmailMessage, content_type: str) -> list[EmailMessage]:
    return [part for part in message.walk() if part.get_content_type() == content_type]


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


@pytest.fixture(scope="module")
def zoe_message(world: World) -> tuple[Composed, EmailMessage]:
    composed = world.composer().compose(world.zoe, world.zoe_invitation)
    return composed, parse(composed)


def rsvp_url(invitation: Invitation) -> str:
    return f"{BASE_URL}/r/{make_token(SECRET, invitation.public_id, invitation.token_version)}"


def test_mime_tree(zoe_message: tuple[Composed, EmailMessage]) -> None:
    _, message = zoe_message
    assert tree(message) == (
        "multipart/mixed",
        [
            ("multipart/alternative", ["text/plain", "text/html", "text/calendar"]),
            "application/ics",
        ],
    )
    assert message["MIME-Version"] == "1.0"


def test_calendar_part_carries_the_method(zoe_message: tuple[Composed, EmailMessage]) -> None:
    _, message = zoe_message
    [calendar_part] = parts(message, "text/calendar")
    assert calendar_part.get_param("method") == "REQUEST"
    assert calendar_part.get_content_charset() == "utf-8"
    calendar = Calendar.from_ical(calendar_part.get_content())
    assert str(calendar["METHOD"]) == calendar_part.get_param("method")


def test_ics_attachment(zoe_message: tuple[Composed, EmailMessage]) -> None:
    _, message = zoe_message
    [calendar_part] = parts(message, "text/calendar")
    [attachment] = parts(message, "application/ics")
    assert attachment.get_content_disposition() == "attachment"
    assert attachment.get_filename() == "invite.ics"
    data = attachment.get_content()
    assert isinstance(data, bytes)
    assert data.decode("utf-8") == calendar_part.get_content()
    assert str(Calendar.from_ical(data)["METHOD"]) == "REQUEST"


def test_calendar_is_for_this_recipient_and_event(
    world: World, zoe_message: tuple[Composed, EmailMessage]
) -> None:
    _, message = zoe_message
    [calendar_part] = parts(message, "text/calendar")
    [event] = Calendar.from_ical(calendar_part.get_content()).walk("VEVENT")
    assert str(event["ATTENDEE"]) == "mailto:zoe@example.org"
    assert event["ATTENDEE"].params["CN"] == "Zoë van Ĳsbrandt"
    assert str(event["UID"]) == world.event.ics_uid
    assert event["SEQUENCE"] == world.event.sequence
    assert str(event["URL"]) == rsvp_url(world.zoe_invitation)
    assert event["DTSTART"].dt == datetime(2018, 2, 13, 18, 30, tzinfo=UTC)
    assert event["DTSTART"].params["TZID"] == "Europe/Amsterdam"
    assert "Saskia van Grinsven" in str(event["DESCRIPTION"])
    assert str(event["LOCATION"]) == "Fort Vreeswijk, Fort Vreeswijk 1, Nieuwegein"
    assert str(event["ORGANIZER"]) == "mailto:uitnodigingen@example.org"


def test_headers(zoe_message: tuple[Composed, EmailMessage]) -> None:
    composed, message = zoe_message
    assert message["From"] == SENDER
    to = message["To"]
    assert len(to.addresses) == 1
    assert to.addresses[0].addr_spec == "zoe@example.org"
    assert composed.to == "zoe@example.org"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Content-Language"] == "nl"
    assert message["Date"].datetime == NOW
    assert message["Message-ID"] == composed.message_id


def test_dutch_subject(zoe_message: tuple[Composed, EmailMessage]) -> None:
    composed, message = zoe_message
    expected = f"Uitnodiging: {TITLE}, dinsdag 13 februari 2018"
    assert message["Subject"] == expected
    assert composed.subject == expected


def test_english_subject_from_the_recipients_language(world: World) -> None:
    composed = world.composer().compose(world.ann, world.ann_invitation)
    message = parse(composed)
    assert message["Subject"] == f"Invitation: {TITLE}, Tuesday 13 February 2018"
    assert message["Content-Language"] == "en"
    assert "Dear Ann Smith," in body(message, "plain")


def test_language_argument_overrides_the_recipient(world: World) -> None:
    message = parse(world.composer().compose(world.ann, world.ann_invitation, "nl"))
    assert message["Subject"].startswith("Uitnodiging: ")
    assert message["Content-Language"] == "nl"


def test_message_id_is_deterministic(world: World, zoe_message: tuple[Composed, EmailMessage]) -> None:
    first, _ = zoe_message
    again = world.composer().compose(world.zoe, world.zoe_invitation)
    other = world.composer().compose(world.ann, world.ann_invitation)
    assert again.message_id == first.message_id
    assert other.message_id != first.message_id
    assert first.message_id.startswith("<invitation.")
    assert first.message_id.endswith("@example.org>")


def test_message_id_depends_on_each_part() -> None:
    base = message_id(SECRET, "example.org", "invitation", 1, 2, 0)
    assert base == message_id(SECRET, "example.org", "invitation", 1, 2, 0)
    variants = {
        message_id("other-secret", "example.org", "invitation", 1, 2, 0),
        message_id(SECRET, "example.org", "reminder", 1, 2, 0),
        message_id(SECRET, "example.org", "invitation", 3, 2, 0),
        message_id(SECRET, "example.org", "invitation", 1, 3, 0),
        message_id(SECRET, "example.org", "invitation", 1, 2, 1),
    }
    assert base not in variants
    assert len(variants) == 5


def test_non_ascii_names_are_encoded_words(zoe_message: tuple[Composed, EmailMessage]) -> None:
    composed, message = zoe_message
    headers = header_block(composed.data)
    assert headers.isascii()
    assert b"=?utf-8?" in headers
    assert message["To"].addresses[0].display_name == "Zoë van Ĳsbrandt"


def long_lines(data: bytes) -> list[bytes]:
    """Lines over 78 characters, leaving out the two List-Unsubscribe lines: each holds one URI that must
    not be broken (RFC 2369), and they stay far below the 998 limit."""
    uri_lines = (b"List-Unsubscribe: <https:", b" <mailto:")
    return [
        line
        for line in data.split(b"\r\n")
        if len(line) > 78 and not (line.startswith(uri_lines) and len(line) < 998)
    ]


def test_whole_message_is_seven_bit_with_crlf_lines(zoe_message: tuple[Composed, EmailMessage]) -> None:
    composed, _ = zoe_message
    assert composed.data.isascii()
    assert b"\n" not in composed.data.replace(b"\r\n", b"")
    assert long_lines(composed.data) == []


@pytest.mark.parametrize(
    "fields",
    [
        {"display_name": "Jan\r\nBcc: evil@example.com"},
        {"display_name": "Jan\nBcc: evil@example.com"},
        {"display_name": "Jan\rBcc: evil@example.com"},
        {"email": "jan@example.org\r\nBcc: evil@example.com"},
    ],
)
def test_header_injection_fails(world: World, fields: dict[str, str]) -> None:
    forged = recipient(**fields)
    with pytest.raises(InputError, match="line break"):
        world.composer().compose(forged, world.zoe_invitation)


def test_sender_with_a_line_break_is_refused(world: World) -> None:
    with pytest.raises(InputError, match="INVITES_FROM"):
        world.composer(sender="VNG <a@example.org>\r\nBcc: evil@example.com")


def test_sender_without_address_is_refused(world: World) -> None:
    with pytest.raises(InputError, match="holds no e-mail address"):
        world.composer(sender="VNG afdeling Utrecht")


def test_sender_domain() -> None:
    assert sender_domain(SENDER) == "example.org"
    assert sender_domain("a@mail.example.nl") == "mail.example.nl"


def test_name_with_comma_stays_one_address(world: World) -> None:
    person = recipient(email="berg@example.org", email_key="berg@example.org", display_name="Berg, Jan")
    message = parse(world.composer().compose(person, world.zoe_invitation))
    [address] = message["To"].addresses
    assert (address.display_name, address.addr_spec) == ("Berg, Jan", "berg@example.org")


def test_text_body(world: World, zoe_message: tuple[Composed, EmailMessage]) -> None:
    _, message = zoe_message
    text = body(message, "plain")
    url = rsvp_url(world.zoe_invitation)
    assert text.startswith("Geachte burgemeester Van Ĳsbrandt,\n")
    assert f"Uw persoonlijke aanmeldpagina: {url}" in text
    assert f"Ja, ik kom: {url}?answer=accepted" in text
    assert f"Nee, ik kan niet: {url}?answer=declined" in text
    assert f"Zet in uw agenda: {url}/invite.ics" in text
    assert "Wanneer: dinsdag 13 februari 2018, 19.30 – 22.00 uur" in text
    assert "Inloop vanaf: 19.00 uur" in text
    assert "Locatie: Fort Vreeswijk, Fort Vreeswijk 1, Nieuwegein" in text
    assert "19.30 – 19.35  Welkomstwoord (Saskia van Grinsven, Movisie)" in text
    for speaker in ("Monique de Beer", "Frans van Eck", "Imke Bardoel"):
        assert speaker in text
    assert "VNG afdeling Utrecht, in samenwerking met Movisie en Zorgbelang Gelderland/Utrecht" in text
    assert "13 december 2017" in text
    assert "zoe@example.org" not in url


def test_html_body(world: World, zoe_message: tuple[Composed, EmailMessage]) -> None:
    _, message = zoe_message
    html = body(message, "html")
    url = rsvp_url(world.zoe_invitation)
    assert f'href="{url}"' in html
    assert f'href="{url}?answer=accepted"' in html
    assert "Geachte burgemeester Van Ĳsbrandt," in html
    for speaker in ("Saskia van Grinsven", "Monique de Beer", "Frans van Eck", "Imke Bardoel"):
        assert speaker in html
    assert "van de gemeente IJsselstein" in html
    assert "calendar.google.com" in html
    assert "dates=20180213T183000Z%2F20180213T210000Z" in html
    assert "outlook.live.com" in html


def test_html_css_is_inlined(zoe_message: tuple[Composed, EmailMessage]) -> None:
    _, message = zoe_message
    html = body(message, "html")
    assert "<style" not in html
    assert '<body style="margin: 0;' in html
    assert '<h1 style="font-size: 22px;' in html
    accept = re.search(r'<a class="button" href="[^"]*\?answer=accepted" style="([^"]*)"', html)
    decline = re.search(r'<a class="button secondary" href="[^"]*\?answer=declined" style="([^"]*)"', html)
    assert accept is not None
    assert decline is not None
    assert "background: #0b5cad" in accept.group(1)
    # The more specific rule wins, as it would in a browser.
    assert "background: #ffffff" in decline.group(1)
    assert "border: 2px solid #0b5cad" in decline.group(1)


def test_html_escapes_recipient_text(world: World) -> None:
    person = recipient(
        email="x@example.org", email_key="x@example.org", last_name="<b>Berg</b>", role_key="mayor"
    )
    message = parse(world.composer().compose(person, world.zoe_invitation))
    html = body(message, "html")
    assert "<b>Berg</b>" not in html
    assert "&lt;b&gt;Berg&lt;/b&gt;" in html
    assert "Geachte burgemeester <b>Berg</b>," in body(message, "plain")


def test_base_url_trailing_slash_is_dropped(world: World) -> None:
    composer = world.composer(base_url=BASE_URL + "/")
    assert composer.rsvp_url(world.zoe_invitation) == rsvp_url(world.zoe_invitation)


def test_bumped_token_version_changes_the_link(world: World) -> None:
    invitation = Invitation(public_id=world.zoe_invitation.public_id, token_version=2)
    composer = world.composer()
    assert composer.rsvp_url(invitation) != rsvp_url(world.zoe_invitation)
    assert composer.rsvp_url(invitation) == (f"{BASE_URL}/r/{make_token(SECRET, invitation.public_id, 2)}")


# --- Every kind, both languages ---------------------------------------------------------------------------

WITH_CALENDAR = {"invitation", "reminder", "update", "cancellation", "rsvp-confirmation"}


def accepted(invitation: Invitation) -> Invitation:
    return Invitation(
        id=invitation.id,
        public_id=invitation.public_id,
        token_version=invitation.token_version,
        answer=Answer.ACCEPTED,
    )


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_and_language(world: World, kind: str, language: str) -> None:
    composer = world.composer(kind)
    invitation = accepted(world.zoe_invitation)
    composed = composer.compose(world.zoe, invitation, language)
    message = parse(composed)
    token = unsubscribe_token(SECRET, invitation.public_id)

    # The MIME tree.
    inner = ["text/plain", "text/html"]
    if kind in WITH_CALENDAR:
        expected_tree: Any = (
            "multipart/mixed",
            [("multipart/alternative", [*inner, "text/calendar"]), "application/ics"],
        )
    else:
        expected_tree = ("multipart/alternative", inner)
    assert tree(message) == expected_tree

    # Every header.
    assert message["From"] == SENDER
    [to] = message["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Zoë van Ĳsbrandt", "zoe@example.org")
    assert len(message.get_all("To")) == 1
    assert message["Subject"] == composed.subject
    assert message["Date"].datetime == NOW
    assert message["Message-ID"] == composed.message_id == composer.message_id(world.zoe)
    assert message["MIME-Version"] == "1.0"
    assert message["Content-Language"] == language
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert re.sub(r"\s+", " ", str(message["List-Unsubscribe"])) == (
        f"<{BASE_URL}/u/{token}>, <mailto:uitnodigingen+unsubscribe@example.org?subject=unsubscribe-{token}>"
    )
    assert composed.data.isascii()
    assert long_lines(composed.data) == []

    # What the bodies say is what the plain rendering says.
    reference = composer.reference(world.zoe, invitation, language)
    assert body(message, "plain") == reference.text
    assert body(message, "html") == reference.html
    assert reference.subject == composed.subject
    greeting = "Geachte burgemeester" if language == "nl" else "Dear Mayor"
    assert reference.text.startswith(f"{greeting} Van Ĳsbrandt,\n")
    assert f">{greeting} Van Ĳsbrandt,</p>" in reference.html
    assert f"{BASE_URL}/u/{token}" in reference.text
    assert f'href="{BASE_URL}/u/{token}"' in reference.html

    if kind not in WITH_CALENDAR:
        assert reference.ics is None
        return
    [calendar_part] = parts(message, "text/calendar")
    [attachment] = parts(message, "application/ics")
    data = attachment.get_content()
    assert data == reference.ics
    assert calendar_part.get_content().encode() == reference.ics
    calendar = Calendar.from_ical(data)
    method = "CANCEL" if kind == "cancellation" else "REQUEST"
    assert calendar_part.get_param("method") == method == str(calendar["METHOD"])
    [event] = calendar.walk("VEVENT")
    assert str(event["UID"]) == world.event.ics_uid
    assert event["DTSTART"].dt == datetime(2018, 2, 13, 18, 30, tzinfo=UTC)
    assert event["DTEND"].dt == datetime(2018, 2, 13, 21, 0, tzinfo=UTC)
    assert event["DTSTART"].params["TZID"] == event["DTEND"].params["TZID"] == "Europe/Amsterdam"
    assert event["DTSTAMP"].dt == NOW
    [zone] = calendar.walk("VTIMEZONE")
    assert {sub.name for sub in zone.subcomponents} == {"STANDARD", "DAYLIGHT"}
    assert str(event["SUMMARY"]) == TITLE
    description = str(event["DESCRIPTION"])
    assert "Saskia van Grinsven" in description
    assert ("Inloop vanaf 19.00" if language == "nl" else "Doors open at 19:00") in description
    assert str(event["LOCATION"]) == "Fort Vreeswijk, Fort Vreeswijk 1, Nieuwegein"
    assert (event["GEO"].latitude, event["GEO"].longitude) == pytest.approx((52.0072, 5.0953))
    assert str(event["URL"]) == rsvp_url(invitation)
    assert str(event["ORGANIZER"]) == "mailto:uitnodigingen@example.org"
    assert event["ORGANIZER"].params["CN"] == "VNG afdeling Utrecht"
    attendee = event["ATTENDEE"]
    assert str(attendee) == "mailto:zoe@example.org"
    assert attendee.params["CN"] == "Zoë van Ĳsbrandt"
    assert attendee.params["ROLE"] == "REQ-PARTICIPANT"
    if kind == "rsvp-confirmation":
        assert (attendee.params["PARTSTAT"], attendee.params["RSVP"]) == ("ACCEPTED", "FALSE")
    else:
        assert (attendee.params["PARTSTAT"], attendee.params["RSVP"]) == ("NEEDS-ACTION", "TRUE")
    if kind == "cancellation":
        assert str(event["STATUS"]) == "CANCELLED"
        assert event["SEQUENCE"] == world.event.sequence + 1
    else:
        assert str(event["STATUS"]) == "CONFIRMED"
        assert event["SEQUENCE"] == world.event.sequence


def test_update_and_cancellation_keep_the_uid_and_the_cancellation_outranks(world: World) -> None:
    def vevent(kind: str) -> Any:
        data = world.composer(kind).calendar(world.zoe, world.zoe_invitation)
        assert data is not None
        return Calendar.from_ical(data).walk("VEVENT")[0]

    invitation, update, cancellation = vevent("invitation"), vevent("update"), vevent("cancellation")
    assert str(invitation["UID"]) == str(update["UID"]) == str(cancellation["UID"])
    assert cancellation["SEQUENCE"] > update["SEQUENCE"] >= invitation["SEQUENCE"]


def test_update_subject_says_what_changed(world: World) -> None:
    before = world.event.changed_fields
    world.event.changed_fields = ["starts_at", "venue_name", "venue_city"]
    try:
        dutch = world.composer("update").compose(world.zoe, world.zoe_invitation, "nl")
        english = world.composer("update").compose(world.zoe, world.zoe_invitation, "en")
    finally:
        world.event.changed_fields = before
    assert dutch.subject.startswith(f"Gewijzigd: tijd en locatie – {TITLE}")
    assert english.subject.startswith(f"Changed: time and venue – {TITLE}")
    assert "de tijd en locatie" in body(parse(dutch), "plain")


@pytest.mark.parametrize(
    ("answer", "method", "partstat"),
    [
        (Answer.ACCEPTED, "REQUEST", "ACCEPTED"),
        (Answer.TENTATIVE, "REQUEST", "TENTATIVE"),
        (Answer.DECLINED, "CANCEL", None),
    ],
)
def test_rsvp_confirmation_follows_the_answer(
    world: World, answer: Answer, method: str, partstat: str | None
) -> None:
    invitation = Invitation(public_id=world.zoe_invitation.public_id, token_version=1, answer=answer)
    message = parse(world.composer("rsvp-confirmation").compose(world.zoe, invitation))
    [calendar_part] = parts(message, "text/calendar")
    assert calendar_part.get_param("method") == method
    [event] = Calendar.from_ical(calendar_part.get_content()).walk("VEVENT")
    assert str(event["STATUS"]) == ("CANCELLED" if method == "CANCEL" else "CONFIRMED")
    if partstat:
        assert event["ATTENDEE"].params["PARTSTAT"] == partstat


def test_rsvp_confirmation_without_a_calendar(world: World) -> None:
    composer = world.composer("rsvp-confirmation")
    never_answered = Invitation(public_id=world.zoe_invitation.public_id, token_version=1, answer=None)
    assert tree(parse(composer.compose(world.zoe, never_answered))) == (
        "multipart/alternative",
        ["text/plain", "text/html"],
    )
    declined = Invitation(public_id=world.zoe_invitation.public_id, token_version=1, answer=Answer.DECLINED)
    # The caller knows this person never accepted: nothing to take out of a calendar.
    message = parse(composer.compose(world.zoe, declined, method=None))
    assert parts(message, "text/calendar") == []
    with pytest.raises(InputError, match="unsupported calendar method"):
        composer.compose(world.zoe, declined, method="PUBLISH")


# --- A cancelled event ------------------------------------------------------------------------------------


@contextmanager
def cancelled(world: World) -> Iterator[None]:
    """The event as cancellation.cancel_event leaves it: cancelled, its SEQUENCE raised."""
    event = world.event
    before = (event.status, event.sequence)
    event.status, event.sequence = EventStatus.CANCELLED, event.sequence + 1
    try:
        yield
    finally:
        event.status, event.sequence = before


def answered(world: World, answer: Answer | None) -> Invitation:
    return Invitation(public_id=world.zoe_invitation.public_id, token_version=1, answer=answer)


@pytest.mark.parametrize("kind", ["invitation", "reminder", "update"])
def test_no_kind_that_carries_a_request_can_be_composed_for_a_cancelled_event(
    world: World, kind: str
) -> None:
    world.composer(kind)  # composes while the event stands
    with cancelled(world), pytest.raises(CancelledEvent) as raised:
        world.composer(kind)
    assert isinstance(raised.value, InputError)
    assert (raised.value.slug, raised.value.kind) == (world.event.slug, kind)
    assert str(raised.value) == (
        f"event {world.event.slug!r} is cancelled: its {kind} would carry a calendar REQUEST, which puts the "
        "meeting back in every calendar that gets it; only the cancellation can be sent (kind cancellation)"
    )


def test_a_cancelled_event_still_composes_its_cancellation_with_the_raised_sequence(world: World) -> None:
    with cancelled(world):
        composer = world.composer("cancellation")
        message = parse(composer.compose(world.zoe, world.zoe_invitation))
        reference = composer.reference(world.zoe, world.zoe_invitation)
        sequence = world.event.sequence
    [calendar_part] = parts(message, "text/calendar")
    assert calendar_part.get_param("method") == "CANCEL"
    [event] = Calendar.from_ical(calendar_part.get_content()).walk("VEVENT")
    assert str(event["STATUS"]) == "CANCELLED"
    assert event["SEQUENCE"] == sequence, "the SEQUENCE cancel_event raised, not one more"
    assert reference.method == "CANCEL" and reference.ics == calendar_part.get_content().encode()


def test_an_explicit_request_for_a_cancelled_event_is_refused_on_every_path(world: World) -> None:
    with cancelled(world):
        composer = world.composer("cancellation")
        for attempt in (composer.compose, composer.parts, composer.reference, composer.calendar):
            with pytest.raises(CancelledEvent, match="is cancelled"):
                attempt(world.zoe, world.zoe_invitation, method="REQUEST")
        assert composer.method_for(world.zoe_invitation, "CANCEL") == "CANCEL"
        message = parse(composer.compose(world.zoe, world.zoe_invitation, method=None))
    assert parts(message, "text/calendar") == []


def test_a_confirmation_for_a_cancelled_event_only_ever_takes_the_meeting_out(world: World) -> None:
    with cancelled(world):
        composer = world.composer("rsvp-confirmation")
        for answer in (Answer.ACCEPTED, Answer.TENTATIVE):
            with pytest.raises(CancelledEvent, match="its rsvp-confirmation would carry a calendar REQUEST"):
                composer.compose(world.zoe, answered(world, answer))
            with pytest.raises(CancelledEvent):
                composer.calendar(world.zoe, answered(world, answer))
        declined = parse(composer.compose(world.zoe, answered(world, Answer.DECLINED)))
        never = parse(composer.compose(world.zoe, answered(world, None)))
        waitlist = parse(world.composer("waitlist").compose(world.zoe, world.zoe_invitation))
    [calendar_part] = parts(declined, "text/calendar")
    assert calendar_part.get_param("method") == "CANCEL"
    assert parts(never, "text/calendar") == [] and parts(waitlist, "text/calendar") == []


# --- The fast path says exactly what the plain rendering says ---------------------------------------------

HOSTILE: list[dict[str, Any]] = [
    {"display_name": "Zoë van Ĳsbrandt", "first_name": "Zoë", "last_name": "Ĳsbrandt", "role_key": "mayor"},
    {"display_name": "Coöperatie Ĳsselstein", "organisation": "Coöperatie <Ĳsselstein> & Zn."},
    {"display_name": 'Jan "de" Berg, <b>O\'Brien</b> & co', "last_name": "<script>x</script>"},
    {"display_name": "  Spaces  around  ", "last_name": " Berg ", "role_key": "alderman"},
    {"display_name": "Tab\there", "last_name": "Non\xa0breaking", "role_key": "council_member"},
    {"display_name": "", "last_name": "", "role_key": "clerk", "municipality_code": None},
    {"salutation": "Hooggeachte heer & mevrouw <Berg>", "attributes": {"fractie": "D&66", "zetels": 3}},
    {"display_name": "Ž" * 90, "last_name": "\\^;,:" * 20, "role_key": "mayor"},
    {"display_name": "\ue000" + "0\ue001", "last_name": "\ue0000\ue001"},
]


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", KINDS)
def test_fast_bytes_decode_to_the_plain_rendering(world: World, kind: str, language: str) -> None:
    composer = world.composer(kind)
    for number, fields in enumerate(HOSTILE):
        address = f"hostile{number}@example.org"
        person = recipient(
            **{"id": 1000 + number, "email": address, "email_key": address, "municipality_code": "GM0353"}
            | fields
        )
        invitation = Invitation(public_id=f"pid{number}", token_version=1, answer=Answer.TENTATIVE)
        composed = composer.compose(person, invitation, language)
        message = parse(composed)
        reference = composer.reference(person, invitation, language)
        assert composer.parts(person, invitation, language) == reference
        assert message["Subject"] == reference.subject
        assert body(message, "plain") == reference.text.replace("\r\n", "\n")
        assert body(message, "html") == reference.html
        if reference.ics is not None:
            [attachment] = parts(message, "application/ics")
            assert attachment.get_content() == reference.ics
        assert to_header(composed.data) == (" ".join(person.display_name.split()), address)
        assert long_lines(composed.data) == []


# --- Headers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Zoë",
        "Coöperatie De Ĳssel",
        "Ĳsselstein",
        "Berg, Jan",
        'Jan "de" Berg',
        "back\\slash",
        "J. de Vries-Ĳzerman (griffie)",
        "Ž" * 80,
        "Anna Maria Johanna " * 6,
        "=?utf-8?q?not_a_word?=",
        "tab\tin name",
    ],
)
def test_display_names_round_trip(name: str) -> None:
    header = address_header("To", name, "jan@example.org")
    assert header.isascii()
    assert all(len(line) <= 78 for line in header.split(b"\r\n"))
    assert to_header(header) == (" ".join(name.split()), "jan@example.org")


def to_header(data: bytes) -> tuple[str, str]:
    """The To header's display name and address, decoded as RFC 2047 says.

    The standard library's address parser puts a space between two adjacent encoded-words, where RFC 2047
    6.2 says to join them; `decode_header` joins them. Names short enough for one encoded-word per run of
    words go through the address parser as well."""
    message = email.message_from_bytes(header_block(data) + b"\r\n\r\n", policy=email.policy.compat32)
    raw = re.sub(r"\r\n[ \t]", " ", str(message["To"]))
    phrase, _, address = raw.rpartition(" <")
    if not phrase:
        return "", raw
    if "=?" in phrase:
        name = str(email.header.make_header(email.header.decode_header(phrase)))
    else:
        name = email.utils.parseaddr(raw)[0]
    if not re.search(r"\?=\s+=\?", phrase):
        parsed = email.message_from_bytes(header_block(data) + b"\r\n\r\n", policy=email.policy.default)
        [one] = parsed["To"].addresses
        assert (one.display_name, one.addr_spec) == (name, address.rstrip(">"))
    return name, address.rstrip(">")


@pytest.mark.parametrize(
    ("name", "address"),
    [
        ("Jan\r\nBcc: evil@example.com", "jan@example.org"),
        ("Jan", "jan@example.org\nBcc: evil@example.com"),
        ("Jan", "jan@example.org>, evil@example.com"),
        ("Jan", "jan@example.org Bcc:evil@example.com"),
    ],
)
def test_address_header_refuses_forgery(name: str, address: str) -> None:
    with pytest.raises(InputError):
        address_header("To", name, address)


def test_line_breaks_in_other_fields_never_reach_a_header(world: World) -> None:
    with pytest.raises(InputError, match="line break"):
        world.composer(unsubscribe_mailto="a@example.org\r\nBcc: evil@example.com")
    # Personal values in the subject are folded to one line, so they cannot open a header either.
    event = world.event
    before = dict(event.extra)
    event.extra = {**before, "templates": {"invitation": {"subject": {"nl": "Voor {{ recipient.name }}"}}}}
    try:
        forged = recipient(email="x@example.org", email_key="x@example.org", display_name="X")
        forged.salutation = "Beste\r\nBcc: evil@example.com"
        composed = world.composer().compose(forged, world.zoe_invitation)
    finally:
        event.extra = before
    headers = header_block(composed.data)
    assert b"\r\nBcc:" not in headers
    assert parse(composed).get_all("Bcc") is None


def test_default_unsubscribe_mailto() -> None:
    assert default_unsubscribe_mailto(SENDER) == "uitnodigingen+unsubscribe@example.org"


def test_test_sends_are_marked_and_get_their_own_message_id(world: World) -> None:
    composer = world.composer(test=True)
    first = composer.compose(world.zoe, world.zoe_invitation)
    second = composer.compose(world.zoe, world.zoe_invitation)
    assert first.subject.startswith("[TEST] Uitnodiging: ")
    assert first.message_id != second.message_id
    assert first.message_id.startswith("<test.invitation.")


# --- DKIM -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dkim_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A fresh 2048-bit RSA key (openssl), and the TXT record that would publish its public half."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed to make a DKIM test key")
    directory = tmp_path_factory.mktemp("dkim")
    key = directory / "dkim.pem"
    subprocess.run(
        [openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key)],
        check=True,
        capture_output=True,
    )
    public = subprocess.run(
        [openssl, "rsa", "-in", str(key), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    import base64

    return key, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def test_dkim_signature_verifies_and_covers_the_headers(world: World, dkim_pair: tuple[Path, bytes]) -> None:
    key_file, record = dkim_pair
    signer = DkimKey.load(key_file, "invites2018", "example.org")
    composed = world.composer(dkim=signer).compose(world.zoe, world.zoe_invitation)
    assert composed.data.startswith(b"DKIM-Signature: ")

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == b"invites2018._domainkey.example.org." else None

    assert dkim.verify(composed.data, dnsfunc=dns)
    signature = parse(composed)["DKIM-Signature"]
    signed = {
        h.strip().lower()
        for h in re.search(r"h=([^;]+)", re.sub(r"\s", "", str(signature))).group(1).split(":")
    }  # type: ignore[union-attr]
    assert {"from", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post"} <= signed
    # A changed subject breaks the signature.
    tampered = composed.data.replace(b"Subject: Uitnodiging", b"Subject: Uitnodigin9", 1)
    assert tampered != composed.data
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_a_bad_dkim_key_file_is_an_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(InputError, match="INVITES_DKIM_KEY_FILE"):
        DkimKey.load(bad, "s", "example.org")
    with pytest.raises(InputError, match="INVITES_DKIM_KEY_FILE"):
        DkimKey.load(tmp_path / "missing.pem", "s", "example.org")
