"""Sending bytes over SMTP with aiosmtplib, and classifying every reply into an outbox status."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Protocol

import aiosmtplib

from invites.models import MessageStatus
from invites.settings import SmtpTarget


@dataclass(frozen=True)
class SendOutcome:
    status: MessageStatus
    reply: str


def classify(code: int, text: str) -> SendOutcome:
    """2xx is sent; 4xx is a temporary refusal to retry later; 5xx is a permanent failure."""
    reply = f"{code} {text}".strip()
    if 200 <= code < 300:
        return SendOutcome(MessageStatus.SENT, reply)
    if 400 <= code < 500:
        return SendOutcome(MessageStatus.DEFERRED, reply)
    return SendOutcome(MessageStatus.FAILED, reply)


class Mailer(Protocol):
    """Sends one message; `size` is how many sends it can have in flight at once."""

    @property
    def size(self) -> int: ...

    async def send(self, sender: str, recipient: str, data: bytes) -> SendOutcome: ...

    async def close(self) -> None: ...


class SmtpMailer:
    """One SMTP connection, opened on first use and reused for every message until closed."""

    def __init__(self, target: SmtpTarget, timeout: float = 30.0, verify_tls: bool = True) -> None:
        self.target = target
        self.timeout = timeout
        self.tls_context = ssl.create_default_context() if verify_tls else _insecure_context()
        self._client: aiosmtplib.SMTP | None = None

    @property
    def size(self) -> int:
        return 1

    async def _connect(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        target = self.target
        client = aiosmtplib.SMTP(
            hostname=target.host,
            port=target.port,
            use_tls=target.implicit_tls,
            start_tls=None,  # STARTTLS when the server offers it
            timeout=self.timeout,
            tls_context=self.tls_context,
            username=target.username,
            password=target.password,
        )
        await client.connect()
        self._client = client
        return client

    async def send(self, sender: str, recipient: str, data: bytes) -> SendOutcome:
        # A bare address (the VERP sender) needs no parsing; a "Name <address>" does.
        envelope_from = parseaddr(sender)[1] if "<" in sender else sender
        try:
            client = await self._connect()
            # MAIL, RCPT and DATA one by one rather than `sendmail`: the same round trips, but sendmail
            # validates both addresses once more and rewrites the whole message a second time only to
            # count its SIZE, which together cost about a tenth of a worker's CPU per message.
            await client.mail(envelope_from, options=_size_option(client, data))
            try:
                await client.rcpt(recipient)
            except aiosmtplib.SMTPRecipientRefused as refusal:
                # As sendmail does: end the envelope, keep the connection for the next message.
                await _reset(client)
                return classify(refusal.code, refusal.message)
            response = await client.data(data)
        except aiosmtplib.SMTPResponseException as exc:
            await self._drop()
            return classify(exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await self._drop()
            return SendOutcome(MessageStatus.DEFERRED, f"connection: {type(exc).__name__}: {exc}")
        return classify(250, response.message)

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()

    async def close(self) -> None:
        await self._drop()

    def abort(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


class SmtpPool:
    """Up to `size` SMTP connections to one relay, opened as needed and kept open between batches.

    It belongs to the event loop that first uses it: a worker process keeps one loop alive for it, so
    connections are reused across tasks instead of opened for every batch.
    """

    def __init__(self, target: SmtpTarget, size: int, timeout: float = 30.0, verify_tls: bool = True) -> None:
        if size < 1:
            raise ValueError(f"an SMTP pool needs at least one connection, not {size}")
        self.target = target
        self._size = size
        self.timeout = timeout
        self.verify_tls = verify_tls
        self._idle: list[SmtpMailer] = []
        self._slots: asyncio.Semaphore | None = None

    @property
    def size(self) -> int:
        return self._size

    async def send(self, sender: str, recipient: str, data: bytes) -> SendOutcome:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._size)
        async with self._slots:
            connection = (
                self._idle.pop()
                if self._idle
                else SmtpMailer(self.target, timeout=self.timeout, verify_tls=self.verify_tls)
            )
            try:
                outcome = await connection.send(sender, recipient, data)
            except BaseException:
                # Cancelled mid-conversation: the session's state is unknown, so it is not reused.
                connection.abort()
                raise
            # A connection whose send failed has dropped itself, and reconnects on its next use.
            self._idle.append(connection)
            return outcome

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        await asyncio.gather(*(connection.close() for connection in idle))


def _size_option(client: aiosmtplib.SMTP, data: bytes) -> list[str]:
    """RFC 1870's SIZE: the octets DATA will carry once aiosmtplib has made every line end in CRLF.

    Counted rather than rewritten: each lone LF or lone CR gains one octet, and a last line without an
    ending gains two.
    """
    if not client.supports_extension("size"):
        return []
    crlf = data.count(b"\r\n")
    size = len(data) + (data.count(b"\n") - crlf) + (data.count(b"\r") - crlf)
    if not data.endswith((b"\n", b"\r")):
        size += 2
    return [f"size={size}"]


async def _reset(client: aiosmtplib.SMTP) -> None:
    # A connection that is gone reconnects on its next use.
    with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
        await client.rset()


def _insecure_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
