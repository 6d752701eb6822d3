"""Classifying SMTP replies, and attributing each reply of a pipelined run to its own message."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

from invites.adapters.mailer import Outgoing, SendOutcome, SmtpMailer, SmtpPool, _Envelope, classify
from invites.adapters.sink import free_port
from invites.domain.states import MessageStatus
from invites.settings import SmtpTarget


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


@pytest.mark.parametrize(
    "data", [b"", b"a", b"a\r\n", b"a\nb", b"a\rb\r", b"\r\r\n\n", b"x\r\n.\r\ny", b"a\r\n\r"]
)
def test_the_size_is_what_data_will_carry(data: bytes) -> None:
    # Counted without rewriting the message, it must still match aiosmtplib's own normalisation.
    assert _Envelope.of("a@example.org", "b@example.org", data).size == len(
        normalize_message_line_endings(data)
    )


@pytest.mark.parametrize(
    "data",
    [b"", b"a", b"a\r\n", b"a\nb", b".a\r\n", b"a\r\n.\r\n..b\r\n", b"x\n.y\r.z", b"\r\r\n\n", b"a\r\n\r"],
)
def test_the_wire_form_is_what_aiosmtplib_would_send(data: bytes) -> None:
    expected = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(data)) + b".\r\n"
    assert _Envelope.of("a@example.org", "b@example.org", data).wire == expected


class Attributing:
    """A real SMTP server offering PIPELINING that answers each message its own way: a recipient
    "refuse…" gets 550 and "later…" 451 at RCPT, a message with the subject "greylist" gets 451 at its end,
    and the first MAIL for "drop…" gets no reply at all: the server hangs up."""

    def __init__(self) -> None:
        self.accepted: list[str] = []
        self.connections = 0
        self.dropped = False

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.connections += 1
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("drop") and not self.dropped:
            self.dropped = True
            server.transport.close()
            return "250 OK"  # never reaches the client
        if address.startswith("refuse"):
            return "550 5.1.1 mailbox unavailable"
        if address.startswith("later"):
            return "451 4.7.1 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if b"Subject: greylist" in envelope.content:
            return "451 4.7.1 greylisted, come back later"
        self.accepted.extend(envelope.rcpt_tos)
        return f"250 OK {envelope.rcpt_tos[0]}"


@pytest.fixture
def attributing() -> Iterator[tuple[Attributing, SmtpTarget]]:
    handler = Attributing()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield handler, SmtpTarget.parse(f"smtp://127.0.0.1:{controller.port}")
    controller.stop()


def _message(recipient: str, subject: str = "Uitnodiging") -> Outgoing:
    data = f"To: {recipient}\r\nSubject: {subject}\r\n\r\nBeste,\r\n.punt\r\n".encode()
    return Outgoing("bounces+1@example.org", recipient, data)


def test_each_reply_of_a_pipelined_run_goes_to_its_own_message(
    attributing: tuple[Attributing, SmtpTarget],
) -> None:
    # Each message's envelope goes out behind the previous body, so every reply here arrives in a write
    # with another message's: a refusal, a greylisted body and a hang-up each belong to one message only.
    handler, target = attributing
    run = [
        (_message("anne@example.org"), "250 OK anne@example.org"),
        (_message("refuse.this@example.org"), "550 5.1.1 mailbox unavailable"),
        (_message("bram@example.org"), "250 OK bram@example.org"),
        (_message("carla@example.org", "greylist"), "451 4.7.1 greylisted, come back later"),
        (_message("dirk@example.org"), "250 OK dirk@example.org"),
        (_message("later@example.org"), "451 4.7.1 try again later"),
        (_message("eva@example.org"), "250 OK eva@example.org"),
        # Hung up on before any reply to its envelope, written ahead: it was never sent, so it starts over.
        (_message("drop.this@example.org"), "250 OK drop.this@example.org"),
        (_message("frank@example.org"), "250 OK frank@example.org"),
    ]

    async def send_all() -> list[SendOutcome]:
        mailer = SmtpMailer(target)
        outcomes = []
        for position, (message, _) in enumerate(run):
            following = run[position + 1][0] if position + 1 < len(run) else None
            outcomes.append(
                await mailer.send(message.sender, message.recipient, message.data, then=following)
            )
        await mailer.close()
        return outcomes

    outcomes = asyncio.run(send_all())
    assert [outcome.reply for outcome in outcomes] == [reply for _, reply in run]
    assert [outcome.status for outcome in outcomes] == [classify(int(r[:3]), "").status for _, r in run]
    assert handler.accepted == [
        "anne@example.org",
        "bram@example.org",
        "dirk@example.org",
        "eva@example.org",
        "drop.this@example.org",
        "frank@example.org",
    ]
    # A new connection after the greylisted body (the server may be reading the next one by then) and
    # after the hang-up; a refused recipient keeps the connection.
    assert handler.connections == 3


def test_a_message_sent_other_than_announced_drops_the_connection_it_was_announced_on(
    attributing: tuple[Attributing, SmtpTarget],
) -> None:
    handler, target = attributing
    first, announced, instead = (
        _message("anne@example.org"),
        _message("bram@example.org"),
        _message("carla@example.org"),
    )

    async def send() -> list[SendOutcome]:
        mailer = SmtpMailer(target)
        outcomes = [await mailer.send(first.sender, first.recipient, first.data, then=announced)]
        outcomes.append(await mailer.send(instead.sender, instead.recipient, instead.data))
        await mailer.close()
        return outcomes

    assert [outcome.status for outcome in asyncio.run(send())] == [MessageStatus.SENT] * 2
    assert handler.accepted == ["anne@example.org", "carla@example.org"]
    assert handler.connections == 2


def test_a_pooled_connection_left_with_a_message_announced_is_not_reused(
    attributing: tuple[Attributing, SmtpTarget],
) -> None:
    handler, target = attributing
    first, announced = _message("anne@example.org"), _message("bram@example.org")

    async def send() -> SendOutcome:
        pool = SmtpPool(target, 1)
        async with pool.connection() as connection:
            await connection.send(first.sender, first.recipient, first.data, then=announced)
        outcome = await pool.send(announced.sender, announced.recipient, announced.data)
        await pool.close()
        return outcome

    assert asyncio.run(send()).status == MessageStatus.SENT
    assert handler.accepted == ["anne@example.org", "bram@example.org"]
    assert handler.connections == 2
