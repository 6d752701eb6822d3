"""Calendar replies arriving at the inbound SMTP endpoint over real SMTP, recorded in real databases."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from invites import db
from invites.eventfile import parse_event_file
from invites.events import load_event
from invites.imports import import_list
from invites.models import Answer, AnswerHistory, AnswerSource, Event, Invitation, Recipient
from invites.replies import ReplyHandler
from invites.sink import free_port
from tests.conftest import EVENT_FILE, NOW, wait_until
from tests.reply_samples import apple, google, outlook


@pytest.fixture
def endpoint(runtime: Any) -> Iterator[tuple[Controller, ReplyHandler, str]]:
    with db.transaction(runtime.sessions) as session:
        event = load_event(session, parse_event_file(EVENT_FILE.read_bytes()), NOW).event
        import_list(
            session, event, b"email\nzoe@example.nl\nbram@example.nl\nanne@example.nl\n", "l.csv", NOW
        )
        uid = event.ics_uid
    handler = ReplyHandler(runtime.sessions, lambda: datetime.now(UTC), runtime.settings, runtime.enqueue)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, handler, uid
    controller.stop()


def deliver(controller: Controller, sender: str, data: bytes) -> None:
    with smtplib.SMTP(controller.hostname, controller.port) as client:
        client.sendmail(sender, ["uitnodigingen@example.org"], data)


def answers(runtime: Any) -> dict[str, Answer | None]:
    with runtime.sessions() as session:
        return dict(
            session.execute(
                select(Recipient.email_key, Invitation.answer).join(
                    Invitation, Invitation.recipient_id == Recipient.id
                )
            ).all()
        )


def test_replies_from_outlook_google_and_apple_are_recorded(runtime: Any, endpoint: Any) -> None:
    controller, handler, uid = endpoint
    deliver(controller, "zoe@example.nl", outlook(uid, "Zoe@Example.nl"))
    deliver(controller, "bram@example.nl", google(uid, "bram@example.nl"))
    deliver(controller, "anne@example.nl", apple(uid, "anne@example.nl"))
    wait_until(lambda: len(handler.results) == 3, timeout=30, what="three replies handled")
    assert answers(runtime) == {
        "zoe@example.nl": Answer.ACCEPTED,
        "bram@example.nl": Answer.DECLINED,
        "anne@example.nl": Answer.TENTATIVE,
    }
    with runtime.sessions() as session:
        sources = set(session.scalars(select(AnswerHistory.source)))
    assert sources == {AnswerSource.CALENDAR}


def test_unknown_forged_and_malformed_replies_are_ignored(runtime: Any, endpoint: Any) -> None:
    controller, handler, uid = endpoint
    deliver(controller, "mallory@example.com", outlook(uid, "zoe@example.nl", sender="mallory@example.com"))
    deliver(controller, "x@example.org", outlook("other-uid@invites", "x@example.org"))
    deliver(controller, "bram@example.nl", outlook(uid, "bram@example.nl", method="REQUEST"))
    deliver(
        controller, "anne@example.nl", b"From: anne@example.nl\r\nSubject: vraag\r\n\r\nKomt er koffie?\r\n"
    )
    wait_until(lambda: len(handler.results) == 4, timeout=30, what="four mails handled")
    reasons = [result.reason for result in handler.results]
    assert not any(result.recorded for result in handler.results)
    assert reasons[0] == "From mallory@example.com is not the attendee zoe@example.nl"
    assert reasons[1].startswith("no invitation for x@example.org")
    assert reasons[2] == "METHOD is REQUEST, not REPLY" and reasons[3] == "no calendar part"
    assert set(answers(runtime).values()) == {None}


def test_a_reply_to_a_cancelled_event_changes_nothing(runtime: Any, endpoint: Any) -> None:
    controller, handler, uid = endpoint
    with db.transaction(runtime.sessions) as session:
        session.scalars(select(Event)).one().status = "cancelled"
    deliver(controller, "zoe@example.nl", outlook(uid, "zoe@example.nl"))
    wait_until(lambda: handler.results, timeout=30)
    assert handler.results[0].reason == "zoe@example.nl: this event has been cancelled"
    assert answers(runtime)["zoe@example.nl"] is None
