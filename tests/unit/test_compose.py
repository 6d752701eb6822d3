"""Composing one message: the MIME tree of an iMIP invitation, its headers, and what the bodies say."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from icalendar import Calendar
from sqlalchemy.orm import Session

from invites import db
from invites.compose import Composed, Composer, message_id, sender_domain
from invites.errors import InputError
from invites.eventfile import parse_event_file
from invites.events import load_event
from invites.models import Base, Event, Invitation, Recipient
from invites.rendering import TemplateSet
from invites.tokens import make_token, new_public_id
from tests.conftest import EVENT_FILE

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

    def composer(self, **overrides: Any) -> Composer:
        options: dict[str, Any] = {"sender": SENDER, "base_url": BASE_URL, "secret": SECRET, "now": NOW}
        options.update(overrides)
        return Composer(self.event, "invitation", self.templates, **options)


def recipient(**fields: Any) -> Recipient:
    values: dict[str, Any] = {
        "email": "jan@example.org",
        "email_key": "jan@example.org",
        "first_name": "",
        "name_prefix": "",
        "last_name": "",
        "display_name": "",
        "salutation": "",
        "role_key": None,
        "role_label": "",
        "municipality_code": None,
        "organisation": "",
        "language": "nl",
        "attributes": {},
        "tags": [],
        "created_at": NOW,
        "updated_at": NOW,
    }
    values.update(fields)
    return Recipient(**values)


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


def test_whole_message_is_seven_bit_with_crlf_lines(zoe_message: tuple[Composed, EmailMessage]) -> None:
    composed, _ = zoe_message
    assert composed.data.isascii()
    assert b"\n" not in composed.data.replace(b"\r\n", b"")
    assert max(len(line) for line in composed.data.split(b"\r\n")) <= 78


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
