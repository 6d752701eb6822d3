"""Read models for an organiser's overview of one event: the counts, what could not be delivered, the
RSVP-page opens that look like link scanners, and the values its audience can be segmented by.

Nothing here writes; the counts and the matrix themselves come from invites.readmodels.status and
invites.db.segments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from invites.db.models import Event, Invitation, OutboundMessage, PageView, Recipient
from invites.domain.states import MessageStatus
from invites.readmodels.status import event_status

PROBLEM_STATUSES = (MessageStatus.FAILED, MessageStatus.BOUNCED, MessageStatus.DEFERRED)
LIMIT = 200
T = TypeVar("T")


@dataclass(frozen=True)
class DeliveryProblem:
    name: str
    email: str
    kind: str
    status: str
    attempts: int
    soft_bounces: int
    reason: str
    at: datetime
    next_attempt_at: datetime | None


@dataclass(frozen=True)
class ScannerOpen:
    name: str
    email: str
    at: datetime
    user_agent: str


@dataclass(frozen=True)
class Listing(Generic[T]):
    """The newest rows, up to a limit, and how many there are in all."""

    rows: list[T]
    total: int


@dataclass(frozen=True)
class AudienceValues:
    """What the event's audience can be segmented by: the values its people actually have."""

    roles: list[str]
    municipalities: list[str]
    tags: list[str]
    languages: list[str]
    has_previous: bool


def counts(session: Session, event: Event) -> dict[str, Any]:
    """The status counts (invites.readmodels.status.event_status), with the invitations that bounced after
    sending counted apart as well; `failed` still includes them, as the status API and the CLI report it."""
    found = event_status(session, event)
    found["bounced"] = int(
        session.scalar(
            select(func.count()).where(
                OutboundMessage.event_id == event.id,
                OutboundMessage.kind == "invitation",
                OutboundMessage.status == MessageStatus.BOUNCED,
            )
        )
        or 0
    )
    return found


def _problem() -> ColumnElement[bool]:
    # A message that was sent but then reported a temporary failure (a soft bounce) is a problem too.
    return or_(OutboundMessage.status.in_(PROBLEM_STATUSES), OutboundMessage.soft_bounces > 0)


def delivery_problems(session: Session, event: Event, limit: int = LIMIT) -> Listing[DeliveryProblem]:
    """The event's messages of any kind that failed, bounced, were deferred or soft-bounced, newest first."""
    where = (OutboundMessage.event_id == event.id, _problem())
    total = session.scalar(select(func.count()).select_from(OutboundMessage).where(*where)) or 0
    rows = session.execute(
        select(OutboundMessage, Recipient.display_name)
        .join(Recipient, Recipient.id == OutboundMessage.recipient_id)
        .where(*where)
        .order_by(OutboundMessage.updated_at.desc(), OutboundMessage.id.desc())
        .limit(limit)
    ).all()
    return Listing(
        [
            DeliveryProblem(
                name=name or "",
                email=message.to_address,
                kind=message.kind,
                status=message.status.value,
                attempts=message.attempts,
                soft_bounces=message.soft_bounces,
                reason=message.last_reply,
                at=message.updated_at,
                next_attempt_at=message.next_attempt_at if message.status == MessageStatus.DEFERRED else None,
            )
            for message, name in rows
        ],
        int(total),
    )


def scanner_opens(session: Session, event: Event, limit: int = LIMIT) -> Listing[ScannerOpen]:
    """The RSVP-page fetches flagged as likely link scanners (never counted as opens), newest first."""
    where = (Invitation.event_id == event.id, PageView.likely_scanner.is_(True))
    joined = select(PageView).join(Invitation, Invitation.id == PageView.invitation_id)
    total = session.scalar(select(func.count()).select_from(joined.where(*where).subquery())) or 0
    rows = session.execute(
        select(PageView.at, PageView.user_agent, Recipient.display_name, Recipient.email)
        .join(Invitation, Invitation.id == PageView.invitation_id)
        .join(Recipient, Recipient.id == Invitation.recipient_id)
        .where(*where)
        .order_by(PageView.at.desc(), PageView.id.desc())
        .limit(limit)
    ).all()
    return Listing([ScannerOpen(name or "", email, at, agent) for at, agent, name, email in rows], int(total))


def audience_values(session: Session, event: Event) -> AudienceValues:
    """The roles, municipality codes, tags and languages that occur in the event's audience."""
    invited = (Invitation.event_id == event.id, Invitation.pending.is_(False))

    def distinct(column: Any) -> list[str]:
        found = session.scalars(
            select(column)
            .distinct()
            .join(Invitation, Invitation.recipient_id == Recipient.id)
            .where(*invited)
        )
        return sorted(value for value in found if value)

    tags: set[str] = set()
    # JSON has no equality on PostgreSQL, so the lists are gathered here rather than made distinct there.
    for listed in session.scalars(
        select(Recipient.tags).join(Invitation, Invitation.recipient_id == Recipient.id).where(*invited)
    ):
        tags.update(str(tag) for tag in listed or [] if str(tag).strip())
    earlier = 0
    if event.series_id is not None:
        earlier = (
            session.scalar(
                select(func.count()).where(
                    Event.series_id == event.series_id,
                    Event.id != event.id,
                    Event.starts_at < event.starts_at,
                )
            )
            or 0
        )
    has_previous = event.predecessor_id is not None or earlier > 0
    return AudienceValues(
        roles=distinct(Recipient.role_key),
        municipalities=distinct(Recipient.municipality_code),
        tags=sorted(tags, key=str.casefold),
        languages=distinct(Recipient.language),
        has_previous=bool(has_previous),
    )
