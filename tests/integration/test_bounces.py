"""Bounces through the inbound SMTP door (aiosmtpd), with DSN bodies as MTAs write them (RFC 3464): each is
tied to its message by the VERP envelope sender, never by the Message-ID it quotes (the IMAP door's other way,
through the organisation's own mail server, is in test_imap.py)."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from invites.adapters.mailer import SmtpMailer
from invites.adapters.sink import free_port, stored_messages
from invites.db.models import OutboundMessage, Recipient, Suppression
from invites.domain.states import MessageStatus
from invites.services.bounces import InboundHandler, parse_dsn, parse_verp, process_message, verp_address
from invites.services.delivery import deliver_batch
from invites.settings import SmtpTarget
from tests.conftest import NOW
from tests.integration.test_delivery import all_ids, prepare, rows_by_address

SECRET = "test-secret-key"


def dsn(to: str, recipient: str, action: str, status: str, diagnostic: str, message_id: str) -> bytes:
    """A delivery status notification as Postfix writes one."""
    return (
        f"Return-Path: <>\r\n"
        f"From: MAILER-DAEMON@mx.example.nl (Mail Delivery System)\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\n"
        f"To: {to}\r\n"
        f"Auto-Submitted: auto-replied\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="B1"\r\n'
        f"Message-Id: <20180115090102.4F2B1@mx.example.nl>\r\n"
        f"\r\n"
        f"--B1\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"This is the mail system at host mx.example.nl.\r\n\r\n"
        f"I'm sorry to have to inform you that your message could not\r\nbe delivered.\r\n\r\n"
        f"--B1\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx.example.nl\r\n"
        f"X-Postfix-Queue-ID: 4F2B1\r\n"
        f"Arrival-Date: Mon, 15 Jan 2018 10:01:01 +0100 (CET)\r\n"
        f"\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        f"Original-Recipient: rfc822;{recipient}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        f"Remote-MTA: dns; mailbox.example.nl\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n"
        f"\r\n"
        f"--B1\r\nContent-Description: Undelivered Message Headers\r\n"
        f"Content-Type: text/rfc822-headers\r\n\r\n"
        f"From: VNG afdeling Utrecht <uitnodigingen@example.org>\r\n"
        f"To: {recipient}\r\n"
        f"Subject: Uitnodiging\r\n"
        f"Message-ID: {message_id}\r\n"
        f"\r\n"
        f"--B1--\r\n"
    ).encode()


@pytest.fixture
def bounce_server(runtime: Any) -> Iterator[Controller]:
    controller = Controller(
        InboundHandler(runtime.sessions, SECRET, lambda: NOW), hostname="127.0.0.1", port=free_port()
    )
    controller.start()
    yield controller
    controller.stop()


def delivered(runtime: Any, sink: Any, people: list[str]) -> dict[str, tuple[OutboundMessage, str]]:
    """Send to `people` through the sink; each row with the envelope sender the sink saw."""
    prepare(runtime, people)
    deliver_batch(
        runtime.sessions,
        all_ids(runtime),
        SmtpMailer(SmtpTarget.parse(sink.url)),
        runtime.settings,
        runtime.templates,
        lambda: NOW,
    )
    rows = rows_by_address(runtime)
    found = {}
    for path in stored_messages(sink.directory):
        message = message_from_bytes(path.read_bytes())
        address = str(message["Delivered-To"])
        found[address] = (rows[address], str(message["Return-Path"]).strip("<>"))
    return found


def bounce(server: Controller, to: str, data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", server.port) as client:
        client.sendmail("", [to], data)


def test_a_hard_bounce_marks_the_row_the_recipient_and_suppresses_the_address(
    runtime: Any, sink: Any, bounce_server: Controller
) -> None:
    sent = delivered(runtime, sink, ["anne@example.org", "gone@example.nl"])
    row, return_path = sent["gone@example.nl"]
    assert parse_verp(SECRET, return_path) == row.id, "the envelope sender names the row"
    body = dsn(return_path, "gone@example.nl", "failed", "5.1.1", "550 5.1.1 User unknown", row.message_id)
    bounce(bounce_server, return_path, body)

    rows = rows_by_address(runtime)
    assert rows["gone@example.nl"].status == MessageStatus.BOUNCED
    assert rows["gone@example.nl"].last_reply == "bounce 5.1.1 smtp; 550 5.1.1 User unknown"
    assert rows["anne@example.org"].status == MessageStatus.SENT
    with runtime.sessions() as session:
        assert session.scalar(select(Recipient.undeliverable).where(Recipient.email_key == "gone@example.nl"))
        assert session.scalar(
            select(Suppression.reason).where(Suppression.email_key == "gone@example.nl")
        ) == ("hard bounce")


def test_a_soft_bounce_is_counted_and_changes_nothing_else(
    runtime: Any, sink: Any, bounce_server: Controller
) -> None:
    sent = delivered(runtime, sink, ["full@example.nl"])
    row, return_path = sent["full@example.nl"]
    body = dsn(return_path, "full@example.nl", "delayed", "4.2.2", "452 4.2.2 Mailbox full", row.message_id)
    bounce(bounce_server, return_path, body)
    bounce(bounce_server, return_path, body)
    after = rows_by_address(runtime)["full@example.nl"]
    assert after.status == MessageStatus.SENT and after.soft_bounces == 2
    with runtime.sessions() as session:
        recipient = session.scalar(select(Recipient).where(Recipient.email_key == "full@example.nl"))
        assert recipient is not None and recipient.soft_bounces == 2 and not recipient.undeliverable
        assert session.scalar(select(Suppression.id)) is None


def test_the_endpoint_refuses_anything_but_our_own_bounce_addresses(
    runtime: Any, bounce_server: Controller
) -> None:
    forged = verp_address("another-secret", 1, "example.org")
    for address in ("postmaster@example.org", forged):
        with (
            smtplib.SMTP("127.0.0.1", bounce_server.port) as client,
            pytest.raises(smtplib.SMTPRecipientsRefused),
        ):
            client.sendmail("", [address], b"Subject: hi\r\n\r\nhello\r\n")


def test_the_smtp_door_acts_only_through_the_verp_address_it_was_sent_to(
    runtime: Any, sink: Any, bounce_server: Controller
) -> None:
    """A recipient knows the VERP address of their own copy (its Return-Path) and the victim's Message-ID
    and address (a forward): a report to their own VERP address about the victim touches only their row."""
    sent = delivered(runtime, sink, ["victim@example.nl", "mallory@example.com"])
    victim, _ = sent["victim@example.nl"]
    mallory, own_verp = sent["mallory@example.com"]
    assert parse_verp(SECRET, own_verp) == mallory.id
    body = dsn(own_verp, "victim@example.nl", "failed", "5.1.1", "550 5.1.1 User unknown", victim.message_id)
    bounce(bounce_server, own_verp, body)
    rows = rows_by_address(runtime)
    assert rows["victim@example.nl"].status == MessageStatus.SENT
    assert rows["mallory@example.com"].status == MessageStatus.BOUNCED, "the VERP address names the row"
    with runtime.sessions() as session:
        assert list(session.scalars(select(Suppression.email_key))) == ["mallory@example.com"]


def test_without_verp_the_message_id_and_address_it_quotes_tie_nothing(
    runtime: Any, sink: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Both are in every copy of the invitation, so without the IMAP door's trust they act on nothing."""
    sent = delivered(runtime, sink, ["gone@example.nl", "anne@example.org"])
    row, _ = sent["gone@example.nl"]
    body = dsn(
        "uitnodigingen@example.org",
        "gone@example.nl",
        "failed",
        "5.1.1",
        "550 5.1.1 User unknown",
        row.message_id,
    )
    results = process_message(runtime.sessions, body, SECRET, NOW)
    assert [(r.row_id, r.kind, r.acted) for r in results] == [(None, "unknown", False)]
    assert "only a VERP address ties a report" in results[0].reason
    assert rows_by_address(runtime)["gone@example.nl"].status == MessageStatus.SENT
    with runtime.sessions() as session:
        assert session.scalar(select(Suppression.id)) is None
    assert any("not acted on" in record.getMessage() for record in caplog.records)


def test_parsing_reads_each_recipient_report_and_ignores_what_is_no_report() -> None:
    body = dsn(
        "bounces+7.0123456789@example.org", "x@example.nl", "failed", "5.7.1", "554 5.7.1 spam", "<m@x>"
    )
    (report,) = parse_dsn(body)
    assert (report.action, report.status, report.recipient, report.message_id) == (
        "failed",
        "5.7.1",
        "x@example.nl",
        "<m@x>",
    )
    assert report.hard and not report.soft
    assert parse_dsn(b"Subject: Out of office\r\n\r\nI am away until Monday.\r\n") == []
