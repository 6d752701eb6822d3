"""Calendar replies: pressing Accept, Decline or Maybe in Outlook, Gmail or Apple Calendar mails an iMIP
REPLY (RFC 6047) to the ORGANIZER. This module reads such a mail and records the answer, source calendar.

Reading is pure (`parse_reply`); recording matches the reply by the event's UID and the attendee's address.
A reply that is unknown, malformed or forged (its From is not the attendee) is ignored and logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes
from email.message import Message
from email.policy import compat32
from email.utils import parseaddr
from typing import Any

from icalendar import Calendar
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from invites.errors import InputError
from invites.models import Answer, AnswerSource, Event, Invitation, Recipient
from invites.rsvp import record_answer
from invites.settings import Settings

Enqueue = Callable[[list[int]], None]

log = logging.getLogger(__name__)

PARTSTAT = {"ACCEPTED": Answer.ACCEPTED, "DECLINED": Answer.DECLINED, "TENTATIVE": Answer.TENTATIVE}


@dataclass(frozen=True)
class Reply:
    uid: str
    attendee: str
    answer: Answer
    sequence: int
    sender: str
    comment: str = ""


class NotAReply(ValueError):
    """The mail holds no usable iMIP REPLY; the reason says why."""


def _calendar_parts(message: Message) -> list[bytes]:
    found = []
    for part in message.walk():
        content_type = part.get_content_type()
        filename = (part.get_filename() or "").lower()
        if content_type in ("text/calendar", "application/ics") or filename.endswith(".ics"):
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                # Clients and relays disagree on line breaks inside an encoded part; iCalendar wants CRLF.
                found.append(re.sub(rb"\r*\n", b"\r\n", payload))
    return found


def parse_reply(data: bytes) -> Reply:
    """The reply in a mail, from its text/calendar part (or .ics attachment) with METHOD:REPLY."""
    message = message_from_bytes(data, policy=compat32)
    sender = parseaddr(str(message.get("From", "")))[1].casefold()
    parts = _calendar_parts(message)
    if not parts:
        raise NotAReply("no calendar part")
    problems = []
    for raw in parts:
        try:
            calendar = Calendar.from_ical(raw)
        except ValueError as exc:
            problems.append(f"unreadable calendar: {exc}")
            continue
        if str(calendar.get("METHOD", "")).upper() != "REPLY":
            problems.append(f"METHOD is {calendar.get('METHOD')!s}, not REPLY")
            continue
        for event in calendar.walk("VEVENT"):
            attendee = event.get("ATTENDEE")
            if isinstance(attendee, list):
                # A reply speaks for one attendee; several means somebody else's list was copied in.
                problems.append("more than one ATTENDEE")
                continue
            if attendee is None or not event.get("UID"):
                problems.append("no ATTENDEE or UID")
                continue
            partstat = str(attendee.params.get("PARTSTAT", "")).upper()
            if partstat not in PARTSTAT:
                problems.append(f"PARTSTAT {partstat or '(none)'} is not an answer")
                continue
            address = str(attendee)
            address = address[7:] if address.lower().startswith("mailto:") else address
            return Reply(
                uid=str(event["UID"]),
                attendee=address.strip().casefold(),
                answer=PARTSTAT[partstat],
                sequence=int(event.get("SEQUENCE", 0)),
                sender=sender,
                comment=str(event.get("COMMENT", ""))[:500],
            )
    raise NotAReply("; ".join(problems) or "no VEVENT")


@dataclass(frozen=True)
class ReplyResult:
    recorded: bool
    reason: str


def record_reply(
    factory: sessionmaker[Session], reply: Reply, now: datetime, settings: Settings, enqueue: Enqueue
) -> ReplyResult:
    """Record a calendar reply as the attendee's answer, source calendar, and queue the notices it calls
    for (the waiting list, people moving up); or say why it was ignored."""
    if reply.sender != reply.attendee:
        # Anyone can mail a REPLY naming someone else; only the attendee's own mailbox speaks for them.
        return _ignored(f"From {reply.sender} is not the attendee {reply.attendee}")
    with factory() as session:
        invitation = session.scalar(
            select(Invitation)
            .join(Event, Event.id == Invitation.event_id)
            .join(Recipient, Recipient.id == Invitation.recipient_id)
            .where(Event.ics_uid == reply.uid, Recipient.email_key == reply.attendee)
        )
        if invitation is None:
            return _ignored(f"no invitation for {reply.attendee} to the event with UID {reply.uid}")
        try:
            record_answer(
                session,
                invitation,
                reply.answer,
                AnswerSource.CALENDAR,
                now,
                user_agent="iMIP REPLY",
                responses=None,
            )
        except InputError as exc:
            session.rollback()
            return _ignored(f"{reply.attendee}: {exc}")
        session.commit()
    log.info("calendar reply: %s %s event %s", reply.attendee, reply.answer.value, reply.uid)
    return ReplyResult(True, reply.answer.value)


def _ignored(reason: str) -> ReplyResult:
    log.warning("calendar reply ignored: %s", reason)
    return ReplyResult(False, reason)


def handle_mail(
    factory: sessionmaker[Session], data: bytes, now: datetime, settings: Settings, enqueue: Enqueue
) -> ReplyResult:
    """Read one mail from the organiser's inbox and record the reply it holds, if any."""
    try:
        reply = parse_reply(data)
    except NotAReply as exc:
        return _ignored(str(exc))
    return record_reply(factory, reply, now, settings, enqueue)


class ReplyHandler:
    """aiosmtpd handler: the inbound SMTP endpoint the organiser's address can forward replies to."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        clock: Callable[[], datetime],
        settings: Settings,
        enqueue: Enqueue,
    ) -> None:
        self.factory = factory
        self.clock = clock
        self.settings = settings
        self.enqueue = enqueue
        self.results: list[ReplyResult] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import asyncio

        data = envelope.original_content or b""
        result = await asyncio.to_thread(
            handle_mail, self.factory, data, self.clock(), self.settings, self.enqueue
        )
        self.results.append(result)
        # Accept even what is ignored: a bounce back to a calendar client helps nobody.
        return "250 OK"
