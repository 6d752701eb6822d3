"""Calendar replies: pressing Accept, Decline or Maybe in Outlook, Gmail or Apple Calendar mails an iMIP
REPLY (RFC 6047) to the ORGANIZER. This module reads such a mail and records the answer, source calendar.

Reading is pure (`parse_reply`); recording matches the reply by the event's UID and the attendee's address.
A reply counts only when its sender is authenticated (invites.domain.mailauth) and is the attendee: anyone can
mail the organiser a REPLY with any From. One that is not, or that would confirm a registration nobody
confirmed through the emailed link yet, is held for the organiser (invites.services.held), counted nowhere. A
reply that is unknown or malformed, or that breaks the event's rules, is ignored and logged.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from email.policy import compat32
from typing import Any

from icalendar import Calendar
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from invites.db.models import Event, Invitation, Recipient
from invites.domain.errors import InputError
from invites.domain.mailauth import Door, TxtLookup, Verdict, authenticate, dns_lookup
from invites.domain.states import Answer, AnswerSource
from invites.services.held import Held, hold
from invites.services.rsvp import check_answer, queue_notices, record_answer
from invites.settings import Settings

Enqueue = Callable[[list[int]], None]

log = logging.getLogger(__name__)

NOT_CONFIRMED = (
    "aanmelding nog niet bevestigd via de link in de e-mail; een agenda-antwoord bevestigt geen aanmelding"
)

PARTSTAT = {"ACCEPTED": Answer.ACCEPTED, "DECLINED": Answer.DECLINED, "TENTATIVE": Answer.TENTATIVE}


@dataclass(frozen=True)
class Reply:
    uid: str
    attendee: str
    answer: Answer
    sequence: int
    comment: str = ""
    # When the calendar made the reply (DTSTAMP); None when it does not say.
    stamped_at: datetime | None = None


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


def _stamp(value: Any) -> datetime | None:
    moment = getattr(value, "dt", None)
    if isinstance(moment, datetime) and moment.tzinfo is not None:
        return moment.astimezone(UTC)
    return None


def parse_reply(data: bytes) -> Reply:
    """The reply in a mail, from its text/calendar part (or .ics attachment) with METHOD:REPLY."""
    message = message_from_bytes(data, policy=compat32)
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
                comment=str(event.get("COMMENT", ""))[:500],
                stamped_at=_stamp(event.get("DTSTAMP")),
            )
    raise NotAReply("; ".join(problems) or "no VEVENT")


@dataclass(frozen=True)
class ReplyResult:
    """What became of a reply: recorded as the answer, held for the organiser, or ignored; and why."""

    recorded: bool
    reason: str
    held: bool = False


def record_reply(
    factory: sessionmaker[Session],
    reply: Reply,
    verdict: Verdict,
    now: datetime,
    settings: Settings,
    enqueue: Enqueue,
) -> ReplyResult:
    """Record a calendar reply whose sender is authenticated as the attendee (`verdict`,
    invites.domain.mailauth) as their answer, source calendar, with how it was authenticated, and queue and
    enqueue the notices it calls for (the waiting list, people moving up). A reply not clearly the attendee's
    is held instead, counted nowhere and the invitation untouched, for the organiser to review. One with no
    invitation, or that the event's rules refuse (cancelled, past the deadline), is ignored. Commits."""
    with factory() as session:
        invitation = _invitation(session, reply)
        if invitation is None:
            return _ignored(f"no invitation for {reply.attendee} to the event with UID {reply.uid}")
        event = session.get_one(Event, invitation.event_id)
        try:
            # Held or not, a reply the rules refuse could never count: the organiser need not see it.
            check_answer(event, invitation, reply.answer, AnswerSource.CALENDAR, now)
        except InputError as exc:
            return _ignored(f"{reply.attendee}: {exc}")
        if _stale(reply, invitation.answered_at):
            # A genuine reply mailed again later (a replay) must not undo the answer given since.
            return _ignored(f"{reply.attendee}: the reply was made before the answer already recorded")
        problem = hold_reason(reply, verdict, invitation.pending)
        if problem:
            evidence = {**verdict.evidence, "attendee": reply.attendee, "uid": reply.uid}
            held = Held(
                invitation_id=invitation.id,
                event_id=event.id,
                source=AnswerSource.CALENDAR,
                reason=problem,
                evidence=evidence,
                answer=reply.answer,
            )
            hold(session, [held], now)
            session.commit()
            log.warning("calendar reply held: %s %s: %s", reply.attendee, reply.answer.value, problem)
            return ReplyResult(False, problem, held=True)
        try:
            outcome = record_answer(
                session,
                invitation,
                reply.answer,
                AnswerSource.CALENDAR,
                now,
                user_agent="iMIP REPLY",
                responses=None,
                evidence={
                    **verdict.evidence,
                    "dtstamp": reply.stamped_at.isoformat() if reply.stamped_at else None,
                },
            )
            queued = queue_notices(session, invitation, outcome, settings, now)
        except InputError as exc:
            session.rollback()
            return _ignored(f"{reply.attendee}: {exc}")
        session.commit()
    if queued:
        enqueue(queued)
    log.info("calendar reply: %s %s event %s", reply.attendee, reply.answer.value, reply.uid)
    return ReplyResult(True, reply.answer.value)


def _invitation(session: Session, reply: Reply) -> Invitation | None:
    return session.scalar(
        select(Invitation)
        .join(Event, Event.id == Invitation.event_id)
        .join(Recipient, Recipient.id == Invitation.recipient_id)
        .where(Event.ics_uid == reply.uid, Recipient.email_key == reply.attendee)
    )


# Clocks of mail clients and of this server differ by a little; a reply this much older still counts.
CLOCK_SKEW = timedelta(minutes=5)


def _stale(reply: Reply, answered_at: datetime | None) -> bool:
    """Whether the reply was made (its DTSTAMP) before the answer the invitation already has."""
    return bool(reply.stamped_at and answered_at and reply.stamped_at < answered_at - CLOCK_SKEW)


def hold_reason(reply: Reply, verdict: Verdict, pending: bool) -> str:
    """Why a reply is not clearly the attendee's (in Dutch, for the organiser); empty when it is."""
    if verdict.sender and verdict.sender != reply.attendee:
        # Only the attendee's own mailbox speaks for them; Reply-To and the display name never do.
        return f"afzender {verdict.sender} is niet de genodigde {reply.attendee}"
    if not verdict.authenticated:
        return verdict.reason
    if pending:
        # Only the emailed link proves the registrant reads that mailbox (rsvp.opted_in).
        return NOT_CONFIRMED
    return ""


def _ignored(reason: str) -> ReplyResult:
    log.warning("calendar reply ignored: %s", reason)
    return ReplyResult(False, reason)


def handle_mail(
    factory: sessionmaker[Session],
    data: bytes,
    now: datetime,
    settings: Settings,
    enqueue: Enqueue,
    door: Door = "imap",
    lookup: TxtLookup | None = None,
) -> ReplyResult:
    """Read one mail that reached the organiser through `door`, and record the reply it holds when its sender
    is authenticated (by our mail server's Authentication-Results, or, given a DNS `lookup`, by our own DKIM
    check), hold it when not, or ignore it (record_reply)."""
    try:
        reply = parse_reply(data)
    except NotAReply as exc:
        return _ignored(str(exc))
    verdict = authenticate(data, settings.trusted_authserv_ids, door, lookup)
    return record_reply(factory, reply, verdict, now, settings, enqueue)


class ReplyHandler:
    """aiosmtpd handler: the inbound SMTP endpoint the organiser's address can forward replies to. Mail comes
    here as the sending side sent it, so its DKIM signatures are checked here too, through the resolver
    INVITES_DNS_RESOLVER names."""

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
        self.lookup = dns_lookup(settings.dns_resolver)
        self.results: list[ReplyResult] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or b""
        result = await asyncio.to_thread(
            handle_mail, self.factory, data, self.clock(), self.settings, self.enqueue, "smtp", self.lookup
        )
        self.results.append(result)
        # Accept even what is held or ignored: a bounce back to a calendar client helps nobody.
        return "250 OK"
