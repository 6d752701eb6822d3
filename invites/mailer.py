"""Sending bytes over SMTP with aiosmtplib, and classifying every reply into an outbox status."""

from __future__ import annotations

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
    async def send(self, sender: str, recipient: str, data: bytes) -> SendOutcome: ...

    async def close(self) -> None: ...


class SmtpMailer:
    """One SMTP connection, opened on first use and reused for every message until closed."""

    def __init__(self, target: SmtpTarget, timeout: float = 30.0, verify_tls: bool = True) -> None:
        self.target = target
        self.timeout = timeout
        self.tls_context = ssl.create_default_context() if verify_tls else _insecure_context()
        self._client: aiosmtplib.SMTP | None = None

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
        envelope_from = parseaddr(sender)[1]
        try:
            client = await self._connect()
            errors, response = await client.sendmail(envelope_from, [recipient], data)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refusal = exc.recipients[0]
            return classify(refusal.code, refusal.message)
        except aiosmtplib.SMTPResponseException as exc:
            await self._drop()
            return classify(exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await self._drop()
            return SendOutcome(MessageStatus.DEFERRED, f"connection: {type(exc).__name__}: {exc}")
        if errors:
            refused = next(iter(errors.values()))
            return classify(refused.code, refused.message)
        return classify(250, response)

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()

    async def close(self) -> None:
        await self._drop()


def _insecure_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
