"""Use cases of the delivery engine: deliver a batch of outbox rows, and sweep for rows that need a push.

A row is claimed (status `sending` plus a lease, taken atomically) before any SMTP conversation, and its
outcome is committed right after the server's reply. A row can therefore be sent twice only when a worker
dies between the server's 250 and that commit; both copies then carry the same Message-ID.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from invites.compose import Composer
from invites.errors import InputError
from invites.mailer import Mailer, SendOutcome
from invites.models import Event, Invitation, MessageStatus, OutboundMessage, Recipient
from invites.rendering import TemplateSet
from invites.settings import Settings

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Enqueue = Callable[[list[int]], None]

# Seconds to wait before each retry of a deferred message; the last delay repeats.
RETRY_DELAYS = (60, 300, 900, 1800, 3600)


def retry_delay(attempts: int, delays: Sequence[int] = RETRY_DELAYS) -> timedelta:
    return timedelta(seconds=delays[min(max(attempts, 1), len(delays)) - 1])


def claimable(now: datetime) -> ColumnElement[bool]:
    return or_(
        OutboundMessage.status == MessageStatus.QUEUED,
        and_(OutboundMessage.status == MessageStatus.DEFERRED, OutboundMessage.next_attempt_at <= now),
        and_(OutboundMessage.status == MessageStatus.SENDING, OutboundMessage.lease_until < now),
    )


def claim(session: Session, ids: Sequence[int], now: datetime, lease: timedelta) -> list[int]:
    """Atomically take the rows among `ids` that nobody else holds; returns the ids now ours.

    PostgreSQL skips rows another worker has locked (FOR UPDATE SKIP LOCKED); SQLite serialises writers,
    so the conditional UPDATE alone is atomic there.
    """
    if not ids:
        return []
    candidates = select(OutboundMessage.id).where(OutboundMessage.id.in_(ids), claimable(now))
    if session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    statement = (
        update(OutboundMessage)
        .where(OutboundMessage.id.in_(candidates.scalar_subquery()), claimable(now))
        .values(
            status=MessageStatus.SENDING,
            lease_until=now + lease,
            attempts=OutboundMessage.attempts + 1,
            updated_at=now,
        )
        .returning(OutboundMessage.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(session.scalars(statement))


@dataclass(frozen=True)
class BatchResult:
    claimed: int
    sent: int
    deferred: int
    failed: int


def deliver_batch(
    factory: sessionmaker[Session],
    ids: Sequence[int],
    mailer: Mailer,
    settings: Settings,
    templates: TemplateSet,
    clock: Clock,
) -> BatchResult:
    """Claim the given outbox rows, compose and send each, and record every outcome as it happens."""
    return asyncio.run(_deliver(factory, ids, mailer, settings, templates, clock))


async def _deliver(
    factory: sessionmaker[Session],
    ids: Sequence[int],
    mailer: Mailer,
    settings: Settings,
    templates: TemplateSet,
    clock: Clock,
) -> BatchResult:
    with factory() as session:
        with session.begin():
            mine = claim(session, ids, clock(), timedelta(seconds=settings.lease_seconds))
        if not mine:
            return BatchResult(0, 0, 0, 0)
        rows = session.execute(
            select(OutboundMessage, Recipient, Invitation)
            .join(Recipient, Recipient.id == OutboundMessage.recipient_id)
            .join(Invitation, Invitation.id == OutboundMessage.invitation_id)
            .where(OutboundMessage.id.in_(mine))
            .order_by(OutboundMessage.id)
        ).all()
        events = {
            event.id: event
            for event in session.scalars(
                select(Event).where(Event.id.in_({message.event_id for message, _, _ in rows}))
            )
        }
        session.commit()  # end the read; each outcome below commits on its own
        composers: dict[tuple[int, str], Composer] = {}
        counts = {MessageStatus.SENT: 0, MessageStatus.DEFERRED: 0, MessageStatus.FAILED: 0}
        try:
            for message, recipient, invitation in rows:
                key = (message.event_id, message.kind)
                if key not in composers:
                    composers[key] = Composer(
                        events[message.event_id],
                        message.kind,
                        templates,
                        sender=settings.sender,
                        base_url=settings.base_url,
                        secret=settings.secret_key,
                        now=clock(),
                    )
                try:
                    composed = composers[key].compose(recipient, invitation, message.language)
                except InputError as exc:
                    outcome = SendOutcome(MessageStatus.FAILED, f"could not compose: {exc}")
                else:
                    outcome = await mailer.send(settings.sender, composed.to, composed.data)
                _record(session, message, outcome, clock())
                session.commit()
                counts[outcome.status] += 1
        finally:
            await mailer.close()
    return BatchResult(
        len(mine), counts[MessageStatus.SENT], counts[MessageStatus.DEFERRED], counts[MessageStatus.FAILED]
    )


def _record(session: Session, message: OutboundMessage, outcome: SendOutcome, now: datetime) -> None:
    session.add(message)
    message.last_reply = outcome.reply[:2000]
    message.updated_at = now
    message.lease_until = None
    message.status = outcome.status
    if outcome.status == MessageStatus.SENT:
        message.sent_at = now
        message.next_attempt_at = None
    elif outcome.status == MessageStatus.DEFERRED:
        message.next_attempt_at = now + retry_delay(message.attempts)
    log.info(
        "message %s to %s: %s (%s)", message.id, message.to_address, outcome.status.value, outcome.reply[:200]
    )


def sweep(factory: sessionmaker[Session], enqueue: Enqueue, now: datetime, settings: Settings) -> int:
    """Find outbox rows that need a worker and hand them on: deferred rows whose retry is due, rows stuck
    in `sending` past their lease, and `queued` rows whose task was lost. Returns how many ids went out.

    Handing a row on twice is harmless: only one worker can claim it.
    """
    stale = now - timedelta(seconds=settings.lease_seconds)
    condition = or_(
        and_(OutboundMessage.status == MessageStatus.QUEUED, OutboundMessage.updated_at < stale),
        and_(OutboundMessage.status == MessageStatus.DEFERRED, OutboundMessage.next_attempt_at <= now),
        and_(OutboundMessage.status == MessageStatus.SENDING, OutboundMessage.lease_until < now),
    )
    count = 0
    last = 0
    with factory() as session:
        while True:
            ids = list(
                session.scalars(
                    select(OutboundMessage.id)
                    .where(condition, OutboundMessage.id > last)
                    .order_by(OutboundMessage.id)
                    .limit(settings.batch_size)
                )
            )
            if not ids:
                return count
            last = ids[-1]
            # Touch the queued ones so the next sweep leaves them alone while this task waits its turn.
            session.execute(
                update(OutboundMessage)
                .where(OutboundMessage.id.in_(ids), OutboundMessage.status == MessageStatus.QUEUED)
                .values(updated_at=now)
                .execution_options(synchronize_session=False)
            )
            session.commit()
            enqueue(ids)
            count += len(ids)
