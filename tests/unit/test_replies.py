"""Reading iMIP REPLY mails as Outlook, Google Calendar and Apple Calendar send them."""

from __future__ import annotations

import pytest

from invites.models import Answer
from invites.replies import NotAReply, parse_reply
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
    assert reply.sender == "zoe.berg@example.nl"


def test_a_forwarded_reply_keeps_the_real_sender() -> None:
    reply = parse_reply(outlook(UID, "zoe@example.nl", sender="mallory@example.com"))
    assert reply.sender == "mallory@example.com" and reply.attendee == "zoe@example.nl"


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
