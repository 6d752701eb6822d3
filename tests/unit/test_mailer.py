"""Classifying SMTP replies into outbox statuses."""

from __future__ import annotations

from typing import Any, cast

import pytest
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

from invites.mailer import _size_option, classify, wire_form
from invites.models import MessageStatus


@pytest.mark.parametrize(
    ("code", "text", "status"),
    [
        (250, "2.0.0 Ok: queued as 4F2B1", MessageStatus.SENT),
        (251, "2.1.5 User not local; will forward", MessageStatus.SENT),
        (421, "4.3.2 Service shutting down", MessageStatus.DEFERRED),
        (450, "4.2.1 Mailbox busy", MessageStatus.DEFERRED),
        (451, "4.7.1 Greylisted, please try again later", MessageStatus.DEFERRED),
        (452, "4.2.2 Mailbox full", MessageStatus.DEFERRED),
        (454, "4.7.0 TLS not available due to temporary reason", MessageStatus.DEFERRED),
        (550, "5.1.1 <nobody@example.org>: Recipient address rejected", MessageStatus.FAILED),
        (552, "5.3.4 Message size exceeds fixed limit", MessageStatus.FAILED),
        (553, "5.1.3 Bad recipient address syntax", MessageStatus.FAILED),
        (554, "5.7.1 Message rejected as spam", MessageStatus.FAILED),
    ],
)
def test_classify(code: int, text: str, status: MessageStatus) -> None:
    outcome = classify(code, text)
    assert outcome.status is status
    assert outcome.reply == f"{code} {text}"


def test_empty_reply_text_keeps_the_code() -> None:
    assert classify(550, "").reply == "550"


def test_final_statuses() -> None:
    assert classify(250, "ok").status.final
    assert classify(550, "no").status.final
    assert not classify(451, "later").status.final


class _Sizes:
    def supports_extension(self, name: str) -> bool:
        return name == "size"


@pytest.mark.parametrize(
    "data", [b"", b"a", b"a\r\n", b"a\nb", b"a\rb\r", b"\r\r\n\n", b"x\r\n.\r\ny", b"a\r\n\r"]
)
def test_the_size_is_what_data_will_carry(data: bytes) -> None:
    # Counted without rewriting the message, it must still match aiosmtplib's own normalisation.
    assert _size_option(cast(Any, _Sizes()), data) == [f"size={len(normalize_message_line_endings(data))}"]


@pytest.mark.parametrize(
    "data",
    [b"", b"a", b"a\r\n", b"a\nb", b".a\r\n", b"a\r\n.\r\n..b\r\n", b"x\n.y\r.z", b"\r\r\n\n", b"a\r\n\r"],
)
def test_the_wire_form_is_what_aiosmtplib_would_send(data: bytes) -> None:
    expected = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(data)) + b".\r\n"
    assert wire_form(data) == expected
