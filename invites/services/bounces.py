"""Bounces: the envelope sender that ties a bounce to its message (VERP), reading delivery status
notifications (RFC 3464), and recording what they say on the outbox row, the recipient and the suppression
list. The doors they come through (an IMAP mailbox, an inbound SMTP endpoint) only hand over the bytes.

Anyone can write a report, and an invitation's Message-ID and address are in every copy, forward and reply
of it, so a report acts on a row only
- through a VERP address of ours (its HMAC is made with the secret key), in the envelope or the To,
  Delivered-To or X-Original-To it arrived with; or
- on the IMAP door, when it quotes the row's Message-ID, its Final-Recipient (or Original-Recipient) is the
  row's address, and the organisation's own mail server (the topmost Authentication-Results of a trusted
  authserv-id, INVITES_REPLY_AUTHSERV_IDS, as for calendar replies) authenticated its sender as the
  recipient's domain or the organisation's own (INVITES_FROM, INVITES_BOUNCE_DOMAIN), a domain above or
  below either: the mail system that can know the address is gone.
Any other report is logged with the reason and left for a person to read.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32
from email.utils import getaddresses, parseaddr
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from invites.db.models import OutboundMessage, Recipient, Suppression
from invites.domain.mailauth import aligned, authenticate, normal_domain
from invites.domain.states import MessageStatus
from invites.messages.compose import sender_domain
from invites.settings import Settings

log = logging.getLogger(__name__)

VERP_LOCAL = "bounces"
_VERP = re.compile(rf"^{VERP_LOCAL}\+(\d+)\.([0-9a-f]{{10}})@", re.IGNORECASE)


def _tag(secret: str, row_id: int) -> str:
    return hmac.new(secret.encode(), f"verp.{row_id}".encode(), hashlib.sha256).hexdigest()[:10]


def verp_address(secret: str, row_id: int, domain: str) -> str:
    """The envelope sender of one outbox row: bounces+<id>.<hmac>@domain. The HMAC stops forged bounces
    from marking arbitrary rows."""
    return f"{VERP_LOCAL}+{row_id}.{_tag(secret, row_id)}@{domain}"


def parse_verp(secret: str, address: str) -> int | None:
    """The outbox row id a VERP address names, or None when it is not one of ours."""
    match = _VERP.match(parseaddr(address)[1] or address)
    if match is None:
        return None
    row_id = int(match.group(1))
    return row_id if hmac.compare_digest(match.group(2).lower(), _tag(secret, row_id)) else None


@dataclass(frozen=True)
class Dsn:
    """What a delivery status notification says about one recipient."""

    action: str  # failed, delayed, delivered, relayed, expanded
    status: str  # the enhanced status code, e.g. 5.1.1
    recipient: str  # the Final-Recipient, else the Original-Recipient
    diagnostic: str
    # Where it points back to: the addresses it was sent to (a VERP address), and the original Message-ID.
    to: tuple[str, ...]
    message_id: str
    original_recipient: str = ""

    @property
    def recipients(self) -> tuple[str, ...]:
        """The addresses the report says it is about: its Final-Recipient and Original-Recipient."""
        return tuple(dict.fromkeys(a.casefold() for a in (self.recipient, self.original_recipient) if a))

    @property
    def hard(self) -> bool:
        return self.action == "failed" and self.status.startswith("5")

    @property
    def soft(self) -> bool:
        return not self.hard and (self.action in ("failed", "delayed") or self.status.startswith("4"))


def parse_dsn(data: bytes, envelope_to: tuple[str, ...] = ()) -> list[Dsn]:
    """The per-recipient reports of a multipart/report; report-type=delivery-status message.

    Anything else (an auto-reply, spam) gives an empty list. `envelope_to` adds the addresses the bounce
    was delivered to when they are known (an SMTP envelope), since a VERP address may be only there.
    """
    message = message_from_bytes(data, policy=compat32)
    report = _find_report(message)
    if report is None:
        return []
    to = tuple(
        dict.fromkeys(
            [
                *envelope_to,
                *(
                    address
                    for _, address in getaddresses(
                        [
                            *message.get_all("To", []),
                            *message.get_all("Delivered-To", []),
                            *message.get_all("X-Original-To", []),
                        ]
                    )
                    if address
                ),
            ]
        )
    )
    status_part = next((p for p in report.walk() if p.get_content_type() == "message/delivery-status"), None)
    original = next(
        (
            p
            for p in report.walk()
            if p.get_content_type() in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers")
        ),
        None,
    )
    message_id = _original_message_id(original)
    if status_part is None:
        return []
    blocks = _status_blocks(status_part)
    reports = []
    for block in blocks[1:]:  # the first block is about the message, the rest about each recipient
        action = (block.get("Action") or "").strip().lower()
        if not action:
            continue
        final = _address(block.get("Final-Recipient"))
        original_to = _address(block.get("Original-Recipient"))
        reports.append(
            Dsn(
                action=action,
                status=(block.get("Status") or "").strip().split(" ")[0],
                recipient=final or original_to,
                diagnostic=" ".join((block.get("Diagnostic-Code") or "").split()),
                to=to,
                message_id=message_id,
                original_recipient=original_to,
            )
        )
    return reports


def _address(value: object) -> str:
    """The address of a Final-Recipient or Original-Recipient field ("rfc822; someone@example.nl")."""
    return str(value or "").strip().split(";", 1)[-1].strip()


def _find_report(message: Message) -> Message | None:
    for part in message.walk():
        if part.get_content_type() == "multipart/report" and (
            (part.get_param("report-type") or "").__str__().lower() == "delivery-status"
        ):
            return part
    return None


def _status_blocks(part: Message) -> list[Message]:
    payload: Any = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    # Some parsers leave the body as text: split it into header blocks ourselves.
    text = payload if isinstance(payload, str) else ""
    return [HeaderParser().parsestr(chunk) for chunk in re.split(r"\r?\n\r?\n", text.strip()) if chunk]


def _original_message_id(part: Message | None) -> str:
    if part is None:
        return ""
    payload: Any = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return str(payload[0].get("Message-ID", "")).strip()
    text = payload if isinstance(payload, str) else ""
    match = re.search(r"^Message-ID:\s*(<[^>]+>)", text, re.IGNORECASE | re.MULTILINE)
    return match.group(1) if match else ""


@dataclass(frozen=True)
class BounceResult:
    row_id: int | None
    kind: str  # hard, soft, ignored (a success report), unknown (not acted on)
    reason: str = ""  # why it was not acted on

    @property
    def acted(self) -> bool:
        """Whether the report was dealt with: recorded, or a success report that needs nothing."""
        return self.kind != "unknown"


@dataclass(frozen=True)
class Trust:
    """What lets a report without a VERP address of ours act (the IMAP door): the authserv-ids of the
    organisation's own mail server, and the organisation's own domains."""

    authserv_ids: frozenset[str]
    own_domains: frozenset[str]

    @classmethod
    def of(cls, settings: Settings) -> Trust:
        domains = {sender_domain(settings.sender), settings.bounce_domain}
        return cls(settings.trusted_authserv_ids, frozenset(normal_domain(d) for d in domains if d.strip()))


@dataclass(frozen=True)
class Reporter:
    """Who sent a report, as the organisation's own mail server found: the From's domain when that server
    authenticated it, else "" and the reason."""

    domain: str
    reason: str = ""


def reporter(data: bytes, trust: Trust) -> Reporter:
    """Who sent a message, by the topmost Authentication-Results of a trusted authserv-id, as for calendar
    replies (mailauth.authenticate); changes nothing."""
    verdict = authenticate(data, trust.authserv_ids, "imap")
    if not verdict.authenticated:
        return Reporter("", verdict.reason)
    return Reporter(normal_domain(verdict.sender.rpartition("@")[2]))


def record_bounce(
    factory: sessionmaker[Session],
    dsn: Dsn,
    secret: str,
    now: datetime,
    trust: Trust | None = None,
    sender: Reporter | None = None,
) -> BounceResult:
    """Tie a report to its outbox row and record it: by a VERP address of ours, else (with `trust` and the
    `sender` the organisation's server authenticated) by the Message-ID and the address it names.

    A hard bounce marks the row bounced, the recipient undeliverable, and suppresses the address. A soft
    bounce is counted on the row and on the recipient. A success report changes nothing. A report that is
    not tied changes nothing either; the result says why.
    """
    if not (dsn.hard or dsn.soft):
        return BounceResult(None, "ignored")
    with factory() as session, session.begin():
        row, reason = _find_row(session, dsn, secret, trust, sender)
        if row is None:
            log.warning(
                "bounce for %s (%s) not acted on: %s",
                dsn.recipient or "?",
                dsn.message_id or "no Message-ID",
                reason,
            )
            return BounceResult(None, "unknown", reason)
        reply = f"bounce {dsn.status} {dsn.diagnostic}".strip()[:2000]
        if dsn.hard:
            row.status = MessageStatus.BOUNCED
            row.last_reply = reply
            row.updated_at = now
            session.execute(
                update(Recipient)
                .where(Recipient.id == row.recipient_id)
                .values(undeliverable=True, updated_at=now)
            )
            email_key = session.scalar(select(Recipient.email_key).where(Recipient.id == row.recipient_id))
            if (
                email_key
                and session.scalar(select(Suppression.id).where(Suppression.email_key == email_key)) is None
            ):
                session.add(Suppression(email_key=email_key, reason="hard bounce", at=now))
            return BounceResult(row.id, "hard")
        row.soft_bounces += 1
        row.updated_at = now
        if row.status == MessageStatus.SENT:
            row.last_reply = reply
        session.execute(
            update(Recipient)
            .where(Recipient.id == row.recipient_id)
            .values(soft_bounces=Recipient.soft_bounces + 1)
        )
        return BounceResult(row.id, "soft")


def _find_row(
    session: Session, dsn: Dsn, secret: str, trust: Trust | None, sender: Reporter | None
) -> tuple[OutboundMessage | None, str]:
    for address in dsn.to:
        row_id = parse_verp(secret, address)
        if row_id is not None:
            row = session.get(OutboundMessage, row_id)
            return row, "" if row is not None else f"the VERP address {address} names no outbox row"
    # Without one, the Message-ID and the address are not enough: both are in every copy of the invitation.
    if trust is None:
        return None, "no VERP address of ours, and only a VERP address ties a report on this door"
    if not dsn.message_id:
        return None, "no VERP address of ours, and no Message-ID of the original message"
    rows = session.scalars(select(OutboundMessage).where(OutboundMessage.message_id == dsn.message_id))
    row = next((r for r in rows if r.to_address.casefold() in dsn.recipients), None)
    if row is None:
        named = ", ".join(dsn.recipients) or "no Final-Recipient"
        return None, f"no VERP address of ours, and no outbox row of {dsn.message_id} for {named}"
    if sender is None or not sender.domain:
        reason = sender.reason if sender is not None else "the sender was not checked"
        return None, f"no VERP address of ours, and the report's sender is not authenticated ({reason})"
    domain = normal_domain(row.to_address.rpartition("@")[2])
    if not any(aligned(sender.domain, d) or aligned(d, sender.domain) for d in {domain, *trust.own_domains}):
        return None, (
            f"no VERP address of ours, and the report comes from {sender.domain}, "
            f"neither {domain} nor the organisation's own domain"
        )
    return row, ""


def process_message(
    factory: sessionmaker[Session],
    data: bytes,
    secret: str,
    now: datetime,
    envelope_to: tuple[str, ...] = (),
    trust: Trust | None = None,
) -> list[BounceResult]:
    """Read one incoming message and record every report it holds; an empty list if it is no DSN.

    `trust` (the IMAP door) lets a report without a VERP address act when the organisation's own mail
    server authenticated its sender (see the module's text); without it only a VERP address ties one.
    """
    reports = parse_dsn(data, envelope_to)
    sender = reporter(data, trust) if trust is not None and reports else None
    return [record_bounce(factory, dsn, secret, now, trust, sender) for dsn in reports]


def read_mailbox_message(
    factory: sessionmaker[Session], data: bytes, settings: Settings, now: datetime
) -> bool:
    """The IMAP door: record the reports of one message from the bounce mailbox; whether to delete it. A
    message that is no report, or holds a report that was not acted on, stays for a person to read."""
    results = process_message(factory, data, settings.secret_key, now, trust=Trust.of(settings))
    return bool(results) and all(result.acted for result in results)


class InboundHandler:
    """An aiosmtpd handler: the inbound SMTP door for bounces (`invites bounces serve`).

    It accepts only mail for VERP addresses of ours, so it cannot be used as an open relay or a spam
    sink, and records each report before answering 250, so a failure makes the sending MTA retry.
    """

    def __init__(self, factory: sessionmaker[Session], secret: str, clock: Callable[[], datetime]) -> None:
        self.factory = factory
        self.secret = secret
        self.clock = clock

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if parse_verp(self.secret, address) is None:
            return "550 5.1.1 not a bounce address of this service"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or envelope.content or b""
        try:
            results = await asyncio.to_thread(
                process_message,
                self.factory,
                bytes(data),
                self.secret,
                self.clock(),
                tuple(envelope.rcpt_tos),
            )
        except Exception:
            log.exception("could not record a bounce")
            return "451 4.3.0 could not record the report; try again later"
        kinds = ",".join(result.kind for result in results) or "no report"
        return f"250 OK {kinds}"
