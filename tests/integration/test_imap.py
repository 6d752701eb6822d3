"""Reading inboxes over IMAP from a real IMAP server (Dovecot): calendar replies and bounce reports.

A calendar reply read from the inbox counts only when the organisation's own mail server (mx.example.org
here) authenticated its sender in the Authentication-Results it added; it is then deleted. Anything else
stays in the inbox, marked as read: a held reply for the organiser to review, a person's question.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from invites import db
from invites.db.models import AnswerHistory, Invitation
from invites.domain.eventfile import parse_event_file
from invites.domain.states import Answer, AnswerSource, MessageStatus
from invites.runtime import Runtime
from invites.services.events import load_event
from invites.services.imports import import_list
from tests.conftest import EVENT_FILE, NOW
from tests.imap_server import Mailbox, dovecot
from tests.integration.test_bounces import delivered, dsn
from tests.integration.test_delivery import rows_by_address
from tests.integration.test_replies import OUR_SERVER, ar, assert_counted, invite, matrix
from tests.reply_samples import google, outlook, with_headers


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with dovecot() as running:
        yield running


@pytest.fixture
def reader(runtime: Any, mailbox: Mailbox) -> Iterator[Runtime]:
    """A runtime whose settings name the test mailbox as both inboxes, and trust our mail server's results."""
    reading = Runtime(
        runtime.settings.model_copy(
            update={
                "reply_imap_url": mailbox.url,
                "bounce_imap_url": mailbox.url,
                "reply_authserv_ids": f"{OUR_SERVER}, mx2.example.org",
            }
        )
    )
    yield reading
    reading.engine.dispose()


def test_calendar_replies_are_read_from_the_organisers_inbox(
    runtime: Any, mailbox: Mailbox, reader: Runtime
) -> None:
    with db.transaction(runtime.sessions) as session:
        event = load_event(session, parse_event_file(EVENT_FILE.read_bytes()), NOW).event
        import_list(session, event, b"email\nzoe@example.nl\nbram@example.nl\n", "l.csv", NOW)
        uid = event.ics_uid
    passed = ar("dmarc=pass header.from=example.nl")
    mailbox.append(with_headers(outlook(uid, "zoe@example.nl"), passed))
    mailbox.append(
        with_headers(google(uid, "bram@example.nl"), ar("dkim=pass header.d=example.nl", "mx2.example.org"))
    )
    question = b"From: anne@example.nl\r\nSubject: Parkeren?\r\n\r\nKan ik er parkeren?\r\n"
    mailbox.append(question)

    assert reader.poll_replies(NOW) == 3
    with runtime.sessions() as session:
        answers = sorted((i.recipient.email_key, i.answer) for i in session.scalars(select(Invitation)))
        sources = set(session.scalars(select(AnswerHistory.source)))
    assert answers == [("bram@example.nl", Answer.DECLINED), ("zoe@example.nl", Answer.ACCEPTED)]
    assert sources == {AnswerSource.CALENDAR}
    left = mailbox.messages()
    assert [(body.split(b"\r\n")[0], seen) for body, seen in left] == [(question.split(b"\r\n")[0], True)], (
        "recorded replies are deleted; a person's question stays, marked as read"
    )
    assert reader.poll_replies(NOW) == 0, "nothing unseen is left to read"


def test_only_replies_our_server_authenticated_count_and_the_rest_stay(
    runtime: Any, mailbox: Mailbox, reader: Runtime
) -> None:
    sent = matrix(invite(runtime, [s.address for s in matrix("", "imap")]), "imap")
    for s in sent:
        mailbox.append(s.data)
    assert reader.poll_replies(NOW) == len(sent)
    assert_counted(runtime, sent, "imap")
    left = mailbox.messages()
    assert sorted(body for body, _ in left) == sorted(s.data for s in sent if not s.counts), (
        "a recorded reply is deleted; a held one stays for a person to read"
    )
    assert all(seen for _, seen in left)


def test_bounce_reports_are_read_from_the_bounce_mailbox(
    runtime: Any, sink: Any, mailbox: Mailbox, reader: Runtime
) -> None:
    sent = delivered(runtime, sink, ["gone@example.nl", "anne@example.org"])
    row, _ = sent["gone@example.nl"]
    report = dsn(
        "uitnodigingen@example.org",
        "gone@example.nl",
        "failed",
        "5.1.1",
        "550 5.1.1 User unknown",
        row.message_id,
    )
    mailbox.append(report)
    assert reader.poll_bounces(NOW) == 1
    rows = rows_by_address(runtime)
    assert rows["gone@example.nl"].status == MessageStatus.BOUNCED
    assert rows["anne@example.org"].status == MessageStatus.SENT
    assert mailbox.messages() == []
