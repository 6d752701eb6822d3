"""Reading inboxes over IMAP from a real IMAP server (Dovecot): calendar replies and bounce reports.

A calendar reply read from the inbox counts only when the organisation's own mail server (mx.example.org
here) authenticated its sender in the Authentication-Results it added; it is then deleted. A bounce report
acts through our VERP address, or else only when that server authenticated its sender as the recipient's
mail system. Anything else stays in the inbox, marked as read: a held reply for the organiser to review, a
forged report, a person's question.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from invites import db
from invites.db.models import AnswerHistory, Invitation, OutboundMessage, Recipient, Suppression
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
from tests.reply_samples import google, outlook, with_from, with_headers


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
    row, return_path = sent["gone@example.nl"]
    report = dsn(return_path, "gone@example.nl", "failed", "5.1.1", "550 5.1.1 User unknown", row.message_id)
    mailbox.append(report)
    assert reader.poll_bounces(NOW) == 1
    rows = rows_by_address(runtime)
    assert rows["gone@example.nl"].status == MessageStatus.BOUNCED
    assert rows["anne@example.org"].status == MessageStatus.SENT
    assert suppressed(runtime) == ["gone@example.nl"]
    assert mailbox.messages() == [], "a report acted on is deleted"


def suppressed(runtime: Any) -> list[str]:
    with runtime.sessions() as session:
        return sorted(session.scalars(select(Suppression.email_key)))


# Reports without our VERP address, as someone who holds a copy of the invitation (a forward, a reply) can
# write them: its Message-ID and address are in every copy. Each is (the row's address, the report, whether
# it may act).
WITHOUT_VERP: list[tuple[str, Callable[[OutboundMessage], bytes], bool]] = [
    # Quoting only the Message-ID, about another address: what the attack of issue 19 did.
    ("quoted@example.nl", lambda row: hard(row, "forger@example.com"), False),
    # Our server vouches for the recipient's domain, but the report is about another address.
    (
        "other@example.nl",
        lambda row: with_headers(hard(row, "someone@example.nl"), ar("dmarc=pass header.from=example.nl")),
        False,
    ),
    # The recipient's mail system, authenticated by our own server: the one way in without VERP.
    (
        "vouched@example.nl",
        lambda row: with_headers(hard(row), ar("dmarc=pass header.from=mx.example.nl")),
        True,
    ),
    # The same results, but written by a server we do not trust (the sender, say).
    (
        "untrusted@example.nl",
        lambda row: with_headers(hard(row), ar("dmarc=pass header.from=mx.example.nl", "mx.example.com")),
        False,
    ),
    # A header of our server's name forged below the one our server added, which found no pass.
    (
        "below@example.nl",
        lambda row: with_headers(
            hard(row), ar("dmarc=fail header.from=mx.example.nl"), ar("dmarc=pass header.from=mx.example.nl")
        ),
        False,
    ),
    # Everything matches, and our server authenticated the sender: but as the forger's own domain.
    (
        "forwarded@example.nl",
        lambda row: with_headers(
            with_from(hard(row), "Mail Delivery System <postmaster@example.com>"),
            ar("dmarc=pass header.from=example.com"),
        ),
        False,
    ),
]


def hard(row: OutboundMessage, final_recipient: str = "") -> bytes:
    """A hard bounce about `row` sent to the From address (no VERP), from MAILER-DAEMON@mx.example.nl."""
    recipient = final_recipient or row.to_address
    return dsn(
        "uitnodigingen@example.org", recipient, "failed", "5.1.1", "550 5.1.1 User unknown", row.message_id
    )


def test_a_report_without_verp_acts_only_when_our_server_vouches_for_the_recipients_mail_system(
    runtime: Any, sink: Any, mailbox: Mailbox, reader: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    sent = delivered(runtime, sink, [address for address, _, _ in WITHOUT_VERP])
    reports = {address: make(sent[address][0]) for address, make, _ in WITHOUT_VERP}
    for report in reports.values():
        mailbox.append(report)
    with caplog.at_level(logging.WARNING, logger="invites.services.bounces"):
        assert reader.poll_bounces(NOW) == len(WITHOUT_VERP)

    rows = rows_by_address(runtime)
    acted = {address for address, _, acts in WITHOUT_VERP if acts}
    assert {a: rows[a].status for a, _, _ in WITHOUT_VERP} == {
        a: MessageStatus.BOUNCED if a in acted else MessageStatus.SENT for a, _, _ in WITHOUT_VERP
    }
    assert suppressed(runtime) == sorted(acted)
    with runtime.sessions() as session:
        undeliverable = set(session.scalars(select(Recipient.email_key).where(Recipient.undeliverable)))
    assert undeliverable == acted
    left = mailbox.messages()
    assert sorted(body for body, _ in left) == sorted(r for a, r in reports.items() if a not in acted), (
        "a report not acted on stays in the inbox"
    )
    assert all(seen for _, seen in left), "marked as read, like other mail that is no report of ours"
    refused = [r.getMessage() for r in caplog.records if "not acted on" in r.getMessage()]
    assert len(refused) == len(WITHOUT_VERP) - len(acted), refused
    assert any("no outbox row of" in m and "forger@example.com" in m for m in refused), refused
    assert any("niet geverifieerd" in m and "mx.example.com" in m for m in refused), refused
    assert any("comes from example.com" in m for m in refused), refused
