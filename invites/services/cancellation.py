"""Use case: cancel an event. Every calendar that has the meeting drops it, and nothing else goes out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from invites.db.models import Campaign, Event, OutboundMessage
from invites.domain.errors import InputError
from invites.domain.states import CampaignState, EventStatus, MessageStatus
from invites.messages.rendering import TemplateSet
from invites.services import campaigns
from invites.settings import Settings


@dataclass(frozen=True)
class CancelResult:
    campaign: campaigns.StartedCampaign
    # Unsent messages of the event (invitations, reminders, …) that will now never go out. One that a
    # worker is sending at this very moment still goes out.
    stopped: int
    enqueued: int


def cancel_event(
    factory: sessionmaker[Session],
    slug: str,
    reason: str,
    settings: Settings,
    templates: TemplateSet,
    enqueue: campaigns.Enqueue,
    now: datetime,
) -> CancelResult:
    """Mark the event cancelled with its reason and raise its SEQUENCE; stop its running campaigns and
    every unsent message (reminders included, and the sweep makes no new ones); then queue a cancellation
    (METHOD:CANCEL, same UID, the new SEQUENCE) to everyone who was sent the meeting, and enqueue it.

    Cancelling again changes the reason only, raises nothing, and sends nobody a second cancellation:
    it completes one that was interrupted.
    """
    with factory() as session, session.begin():
        # Locked first: a reminder sweep that inserted rows for this event either committed before
        # (and its rows are stopped below) or sees the event cancelled and rolls back.
        event = session.scalar(select(Event).where(Event.slug == slug).with_for_update())
        if event is None:
            raise InputError(f"no event with slug {slug!r}")
        if event.status != EventStatus.CANCELLED:
            event.status = EventStatus.CANCELLED
            event.sequence += 1
        if reason.strip():
            event.cancel_reason = reason.strip()
        event.updated_at = now
        session.flush()
        session.execute(
            update(Campaign)
            .where(
                Campaign.event_id == event.id,
                Campaign.kind != "cancellation",
                Campaign.state.in_([CampaignState.RUNNING, CampaignState.PAUSED]),
            )
            .values(state=CampaignState.CANCELLED, finished_at=now)
            .execution_options(synchronize_session=False)
        )
        stopped = session.execute(
            update(OutboundMessage)
            .where(
                OutboundMessage.event_id == event.id,
                OutboundMessage.kind != "cancellation",
                # A row left `sending` by a worker that died would be picked up again: stop it too.
                or_(
                    OutboundMessage.status.in_([MessageStatus.QUEUED, MessageStatus.DEFERRED]),
                    and_(OutboundMessage.status == MessageStatus.SENDING, OutboundMessage.lease_until < now),
                ),
            )
            .values(status=MessageStatus.CANCELLED, next_attempt_at=None, lease_until=None, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        count = int(getattr(stopped, "rowcount", 0) or 0)
    started = campaigns.start_campaign(factory, slug, "cancellation", settings, templates, now)
    handed = campaigns.enqueue_queued(factory, started.scope, enqueue, settings.batch_size)
    return CancelResult(started, count, handed)
