"""Reading iMIP REPLY mails as Outlook, Google Calendar and Apple Calendar send them."""

from __future__ import annotations

import email

import pytest
from icalendar import Calendar

from invites.domain.mailauth import Verdict
from invites.domain.states import Answer
from invites.services.replies import NOT_CONFIRMED, NotAReply, Reply, hold_reason, parse_reply
from tests.reply_samples import apple, google, outlook

UID = "3f2a9c-lokaal-samenspel-2018@invites"


@pytest.mark.parametrize(
    ("mail", "answer"),
    [
        (outlook(UID, "Zoe.Berg@Example.nl"), Answer.ACCEPTED),
        (google(UID, "zoe.berg@example.nl"), Answer.DECLINED),
        (apple(UID, "zoe.berg@example.nl"), Answer.TENTATIVE),
    ],
    ids=["outlook", "google", "apple"],
)
def test_replies_from_every_client_are_read(mail: bytes, answer: Answer) -> None:
    reply = parse_reply(mail)
    assert (reply.uid, reply.attendee, reply.answer, reply.sequence) == (
        UID,
        "zoe.berg@example.nl",
        answer,
        0,
    )


def test_an_exchange_reply_without_organizer_is_read() -> None:
    # Exchange leaves ORGANIZER out of its replies (nextcloud/server#53949); the UID and ATTENDEE suffice.
    mail = outlook(UID, "zoe@example.nl")
    (part,) = [p for p in email.message_from_bytes(mail).walk() if p.get_content_type() == "text/calendar"]
    event = Calendar.from_ical(part.get_payload(decode=True)).walk("VEVENT")[0]
    assert "ORGANIZER" not in event
    assert parse_reply(mail).attendee == "zoe@example.nl"


REPLY = Reply(uid=UID, attendee="zoe@example.nl", answer=Answer.ACCEPTED, sequence=0)


@pytest.mark.parametrize(
    ("verdict", "pending", "reason"),
    [
        (Verdict(True, "zoe@example.nl", ""), False, ""),
        (
            Verdict(True, "mallory@example.com", ""),
            False,
            "afzender mallory@example.com is niet de genodigde",
        ),
        (
            Verdict(False, "mallory@example.com", "x"),
            False,
            "afzender mallory@example.com is niet de genodigde",
        ),
        (
            Verdict(False, "zoe@example.nl", "afzender niet geverifieerd: x"),
            False,
            "afzender niet geverifieerd",
        ),
        (Verdict(False, "", "afzender ongeldig: x"), False, "afzender ongeldig"),
        (Verdict(True, "zoe@example.nl", ""), True, NOT_CONFIRMED),
    ],
    ids=["authenticated", "someone-else", "someone-else-unverified", "unverified", "bad-from", "pending"],
)
def test_what_is_not_clearly_the_attendees_is_held_with_a_reason(
    verdict: Verdict, pending: bool, reason: str
) -> None:
    said = hold_reason(REPLY, verdict, pending)
    assert said.startswith(reason) and bool(said) == bool(reason)


@pytest.mark.parametrize(
    ("mail", "reason"),
    [
        (b"From: a@example.org\r\nSubject: hoi\r\n\r\nGewoon een mail.\r\n", "no calendar part"),
        (outlook(UID, "a@example.org", method="REQUEST"), "METHOD is REQUEST, not REPLY"),
        (apple(UID, "a@example.org", partstat="NEEDS-ACTION"), "PARTSTAT NEEDS-ACTION is not an answer"),
        (outlook(UID, "a@example.org", method="CANCEL"), "METHOD is CANCEL, not REPLY"),
        (
            b"From: a@example.org\r\nContent-Type: text/calendar; method=REPLY\r\n\r\n"
            b"BEGIN:VCALENDAR\r\ngarbage",
            "unreadable calendar|no VEVENT|not REPLY",
        ),
    ],
    ids=["plain-mail", "request", "needs-action", "cancel", "garbage"],
)
def test_what_is_not_a_reply_is_refused_with_a_reason(mail: bytes, reason: str) -> None:
    with pytest.raises(NotAReply, match=reason):
        parse_reply(mail)
