"""Sending bytes over SMTP with aiosmtplib, and classifying every reply into an outbox status."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Protocol

import aiosmtplib
from aiosmtplib.protocol import normalize_message_line_endings

from invites.domain.states import MessageStatus
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


class Connection(Protocol):
    """One SMTP connection's sends, one after another.

    `then` is the message the caller sends next on this connection: its envelope may go out in the same
    write as this message's body (RFC 2920), and the caller must then pass it to the very next `send`.
    """

    async def send(
        self, sender: str, recipient: str, data: bytes, *, then: Outgoing | None = None
    ) -> SendOutcome: ...


class Mailer(Protocol):
    """Sends messages; `size` is how many sends it can have in flight at once, one per connection."""

    @property
    def size(self) -> int: ...

    def connection(self) -> contextlib.AbstractAsyncContextManager[Connection]: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Outgoing:
    """A message as `send` takes it: the envelope's sender and recipient, and the RFC 5322 bytes."""

    sender: str
    recipient: str
    data: bytes


class SmtpMailer:
    """One SMTP connection, opened on first use and reused for every message until closed.

    aiosmtplib opens it (greeting, EHLO, STARTTLS, AUTH); the transactions then run on a `_Session`, which
    pipelines MAIL, RCPT and DATA (RFC 2920) when the server offers it: two round trips a message, not four.
    Given the next message (`then`), it also writes that one's MAIL, RCPT and DATA right behind this one's
    body, so that a run of messages takes one round trip each. The next body still waits for the caller's
    next `send`, which comes only once this outcome is recorded: at most one message on a connection is
    ever accepted by the server and not yet recorded.
    """

    def __init__(
        self,
        target: SmtpTarget,
        timeout: float = 30.0,
        verify_tls: bool = True,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.tls_context = tls_context or shared_tls_context(verify_tls)
        self._session: _Session | None = None
        # The message whose MAIL, RCPT and DATA went out behind the last body, its replies not yet read.
        self._ahead: tuple[Outgoing, _Envelope] | None = None

    @property
    def size(self) -> int:
        return 1

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[SmtpMailer]:
        yield self

    async def _connect(self) -> _Session:
        if self._session is not None and self._session.is_open:
            return self._session
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
        self._session = _Session.take_over(client, self.timeout)
        return self._session

    async def send(
        self, sender: str, recipient: str, data: bytes, *, then: Outgoing | None = None
    ) -> SendOutcome:
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == Outgoing(sender, recipient, data):
            envelope, written = ahead[1], True
        else:
            if ahead is not None:
                # The server waits for the body of a message the caller no longer sends.
                self.abort()
            try:
                envelope, written = _Envelope.of(sender, recipient, data), False
            except ValueError as exc:
                return SendOutcome(MessageStatus.FAILED, f"address: {exc}")
        try:
            session: _Session | None = None
            if written and self._session is not None:
                session = self._session
                try:
                    mail, rcpt, start = await session.envelope_replies()
                except aiosmtplib.SMTPServerDisconnected:
                    # Gone before a reply: nothing of this message was delivered, so it starts over on a
                    # new connection, as it would have had its envelope not been written ahead.
                    self.abort()
                    session = None
            if session is None:
                session = await self._connect()
                mail, rcpt, start = await session.envelope(envelope.mail(session), envelope.rcpt)
            if mail.code == 250 and rcpt.code in (250, 251) and start.code == 354:
                return await self._finish(session, envelope, then)
            return await self._refused(session, mail, rcpt, start)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self.abort()
            return SendOutcome(MessageStatus.DEFERRED, f"connection: {type(exc).__name__}: {exc}")

    async def _refused(
        self,
        session: _Session,
        mail: aiosmtplib.SMTPResponse,
        rcpt: aiosmtplib.SMTPResponse,
        start: aiosmtplib.SMTPResponse,
    ) -> SendOutcome:
        """The outcome of an envelope the server did not accept whole; leaves the connection ready for the
        next message, or drops it."""
        if start.code == 354:
            # A server that accepts DATA without a recipient: the session's state is not worth saving.
            self.abort()
        elif mail.code == 250 and rcpt.code not in (250, 251) and rcpt.code != 421:
            # As sendmail does: end the envelope, keep the connection for the next message.
            await _reset(session)
            return classify(rcpt.code, rcpt.message)
        else:
            await self._drop()
        refusal = next((reply for reply in (mail, rcpt) if reply.code not in (250, 251)), start)
        return classify(refusal.code, refusal.message)

    async def _finish(self, session: _Session, envelope: _Envelope, then: Outgoing | None) -> SendOutcome:
        """Send the body; with `then`, the next message's envelope goes out in the same write."""
        following: _Envelope | None = None
        if then is not None and session.supports_extension("pipelining"):
            with contextlib.suppress(ValueError):  # a bad address fails in its own send
                following = _Envelope.of(then.sender, then.recipient, then.data)
        if then is None or following is None:
            done = await session.command(envelope.wire)
            if done.code != 250:
                await self._drop()
            return classify(done.code, done.message)
        # RFC 2920: DATA may only end a group, so the group is this body and the next MAIL, RCPT and DATA.
        session.write(envelope.wire + following.mail(session) + following.rcpt + b"DATA\r\n")
        self._ahead = (then, following)
        done = await session.reply()
        if done.code != 250:
            # The server may be reading the next body by now, where a QUIT would be taken for text.
            self.abort()
        return classify(done.code, done.message)

    async def _drop(self) -> None:
        if self._ahead is not None:
            self.abort()
            return
        session, self._session = self._session, None
        if session is not None:
            await session.quit()

    async def close(self) -> None:
        await self._drop()

    def settle(self) -> None:
        """Drop the connection if the server waits for the body of a message nobody will send now."""
        if self._ahead is not None:
            self.abort()

    def abort(self) -> None:
        session, self._session, self._ahead = self._session, None, None
        if session is not None:
            session.abort()


@dataclass(frozen=True)
class _Envelope:
    """A message ready for the wire: its envelope addresses as MAIL and RCPT carry them, and its body as
    DATA carries it."""

    sender: bytes
    rcpt: bytes
    wire: bytes
    # RFC 1870's SIZE: the octets of the message with every line ended by CRLF, before dot-stuffing.
    size: int

    @classmethod
    def of(cls, sender: str, recipient: str, data: bytes) -> _Envelope:
        """Raises ValueError for an address that cannot go in an envelope."""
        # A bare address (the VERP sender) needs no parsing; a "Name <address>" does.
        envelope_from = parseaddr(sender)[1] if "<" in sender else sender
        mail_from, rcpt_to = _path(envelope_from), _path(recipient)
        lines = _crlf_lines(data)
        return cls(mail_from, b"RCPT TO:" + rcpt_to + b"\r\n", _dot_stuffed(lines), len(lines))

    def mail(self, session: _Session) -> bytes:
        size = b" size=%d" % self.size if session.supports_extension("size") else b""
        return b"MAIL FROM:" + self.sender + size + b"\r\n"


class _Session(asyncio.Protocol):
    """The transaction phase of an SMTP connection: commands written, their replies read back in order.

    aiosmtplib's protocol reads exactly one reply per command written, so it cannot pipeline; this one
    queues every complete reply as it arrives, however the server splits them into packets.
    """

    def __init__(self, transport: asyncio.Transport, extensions: set[str], timeout: float) -> None:
        self.transport = transport
        self.extensions = extensions
        self.timeout = timeout
        self.buffer = bytearray()
        self.lines: list[str] = []
        self.replies: collections.deque[aiosmtplib.SMTPResponse] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        self.lost: Exception | None = None

    @classmethod
    def take_over(cls, client: aiosmtplib.SMTP, timeout: float) -> _Session:
        """Take a connected, greeted (and, as the server allows, encrypted and authenticated) connection
        from aiosmtplib; from here on its replies arrive here."""
        transport = client.transport
        if not isinstance(transport, asyncio.Transport) or transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("the connection closed while it was set up")
        session = cls(transport, set(client.esmtp_extensions), timeout)
        transport.set_protocol(session)
        return session

    @property
    def is_open(self) -> bool:
        return self.lost is None and not self.transport.is_closing()

    def supports_extension(self, name: str) -> bool:
        return name.lower() in self.extensions

    async def envelope(
        self, mail: bytes, rcpt: bytes
    ) -> tuple[aiosmtplib.SMTPResponse, aiosmtplib.SMTPResponse, aiosmtplib.SMTPResponse]:
        """MAIL, RCPT and DATA (each line with its CRLF): in one write when the server pipelines, else
        one at a time. A server that pipelines refuses DATA itself when MAIL or RCPT was refused (RFC 2920
        3.1)."""
        if self.supports_extension("pipelining"):
            self.write(mail + rcpt + b"DATA\r\n")
            return await self.envelope_replies()
        first = await self.command(mail)
        if first.code != 250:
            return first, _SKIPPED, _SKIPPED
        second = await self.command(rcpt)
        if second.code not in (250, 251):
            return first, second, _SKIPPED
        return first, second, await self.command(b"DATA\r\n")

    async def envelope_replies(
        self,
    ) -> tuple[aiosmtplib.SMTPResponse, aiosmtplib.SMTPResponse, aiosmtplib.SMTPResponse]:
        """The replies to MAIL, RCPT and DATA written in one go."""
        return (await self.reply(), await self.reply(), await self.reply())

    async def command(self, data: bytes) -> aiosmtplib.SMTPResponse:
        self.write(data)
        return await self.reply()

    async def quit(self) -> None:
        if self.is_open:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await self.command(b"QUIT\r\n")
        self.abort()

    def abort(self) -> None:
        self.transport.close()

    def write(self, data: bytes) -> None:
        if not self.is_open:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        self.transport.write(data)

    async def reply(self) -> aiosmtplib.SMTPResponse:
        while not self.replies:
            if self.lost is not None:
                raise self.lost
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self.waiter, self.timeout)
            except TimeoutError as exc:
                # A reply given up on must never be paired with a later command.
                self.abort()
                raise aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response") from exc
        return self.replies.popleft()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\n")) >= 0:
            line = bytes(self.buffer[: end + 1])
            del self.buffer[: end + 1]
            try:
                code = int(line[:3])
            except ValueError:
                self._fail(aiosmtplib.SMTPResponseException(-1, f"Malformed SMTP response line: {line!r}"))
                return
            self.lines.append(line[4:].strip(b" \t\r\n").decode("utf-8", "surrogateescape"))
            if line[3:4] != b"-":
                self.replies.append(aiosmtplib.SMTPResponse(code, "\n".join(self.lines)))
                self.lines = []
        if len(self.buffer) > _MAX_LINE:
            self._fail(aiosmtplib.SMTPResponseException(-1, "Response too long"))
            return
        self._wake()

    def eof_received(self) -> bool:
        self._fail(aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        lost = aiosmtplib.SMTPServerDisconnected("Connection lost")
        lost.__cause__ = exc
        self._fail(lost)

    def _fail(self, exc: Exception) -> None:
        if self.lost is None:
            self.lost = exc
        self.transport.close()
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


# What `envelope` reports for a command it did not send because an earlier one was refused.
_SKIPPED = aiosmtplib.SMTPResponse(503, "not sent: an earlier command was refused")
_MAX_LINE = 8192


def _path(address: str) -> bytes:
    """An envelope address as MAIL and RCPT carry it: <address>, ASCII only (no SMTPUTF8)."""
    if not address or _UNSAFE.search(address):
        raise ValueError(f"{address!r} cannot go in an SMTP envelope")
    return b"<" + address.encode("ascii") + b">"


_UNSAFE = re.compile(r"[^\x21-\x7e]|[<>]")


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
        self.tls_context = shared_tls_context(verify_tls)
        self._idle: list[SmtpMailer] = []
        self._slots: asyncio.Semaphore | None = None

    @property
    def size(self) -> int:
        return self._size

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[SmtpMailer]:
        """One of the connections, for the caller alone until it leaves the block."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._size)
        async with self._slots:
            connection = (
                self._idle.pop()
                if self._idle
                else SmtpMailer(self.target, self.timeout, self.verify_tls, self.tls_context)
            )
            try:
                yield connection
            except BaseException:
                # Left mid-conversation (cancelled, or the caller failed): the session's state is unknown.
                connection.abort()
                raise
            # A connection whose send failed has dropped itself, and reconnects on its next use; one that
            # still waits for a body written ahead is of no use to anyone else.
            connection.settle()
            self._idle.append(connection)

    async def send(self, sender: str, recipient: str, data: bytes) -> SendOutcome:
        async with self.connection() as connection:
            return await connection.send(sender, recipient, data)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        await asyncio.gather(*(connection.close() for connection in idle))


def _crlf_lines(data: bytes) -> bytes:
    """The message with every line ended by CRLF (RFC 5321 2.3.8), the last one too."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        return normalize_message_line_endings(data)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def _dot_stuffed(lines: bytes) -> bytes:
    """CRLF-ended lines as DATA carries them: a line's leading dot doubled, and the final dot."""
    if lines.startswith(b"."):
        lines = b"." + lines
    # Finding is a tenth of the cost of replacing, and most messages have no line to stuff.
    if b"\n." in lines:
        lines = lines.replace(b"\r\n.", b"\r\n..")
    return lines + b".\r\n"


async def _reset(session: _Session) -> None:
    # A connection that is gone reconnects on its next use.
    with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
        if (await session.command(b"RSET\r\n")).code != 250:
            session.abort()


@functools.cache
def shared_tls_context(verify: bool) -> ssl.SSLContext:
    """The process's TLS context for SMTP, built once: loading the system's CA certificates takes 70 ms
    here. A worker builds it before its pool forks (workers.celery_app), so every child has it for free."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
