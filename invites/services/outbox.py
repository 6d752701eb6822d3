"""Use case: queue one personal message (a confirmation, a waiting-list notice, a registration's link).

Like a campaign's rows, it is an outbox row committed before any worker hears of it; its idempotency key
names what caused it (an answer in the history, a registration), so the same cause never mails twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from invites.db.models import Event, Invitation, OutboundMessage, Recipient, Suppression
from invites.domain.states import MessageStatus
from invites.messages.compose import message_id, sender_domain
from invites.settings import Settings


def queue_personal(
    session: Session, kind: str, invitation: Invitation, cause: str, settings: Settings, now: datetime
) -> int | None:
    """Add the outbox row for one message to one invitee, unless it exists or the address is suppressed.

    Returns the new row's id, for the caller to enqueue after its commit; None when nothing is to be sent.
    """
    key = idempotency_key(kind, invitation.event_id, invitation.recipient_id, cause)
    if session.scalar(select(OutboundMessage.id).where(OutboundMessage.idempotency_key == key)):
        return None
    recipient = session.get_one(Recipient, invitation.recipient_id)
    if recipient.undeliverable or session.scalar(
        select(Suppression.id).where(Suppression.email_key == recipient.email_key)
    ):
        return None
    event = session.get_one(Event, invitation.event_id)
    notice = Notice(kind, event, invitation.id, recipient.id, recipient.email, recipient.language, cause)
    row = OutboundMessage(**message_values(notice, settings.secret_key, sender_domain(settings.sender), now))
    session.add(row)
    session.flush()
    return row.id


@dataclass(frozen=True)
class Notice:
    """One personal message to queue: which, to whom, and the cause that makes it one of a kind."""

    kind: str
    event: Event
    invitation_id: int
    recipient_id: int
    address: str
    language: str | None
    cause: str
    email_key: str = ""
    undeliverable: bool = False


def queue_many(session: Session, notices: Sequence[Notice], settings: Settings, now: datetime) -> list[int]:
    """`queue_personal` for many messages at once, in two statements however many there are.

    Returns the new rows' ids; a message whose row exists already, or whose address is suppressed, has none.
    """
    if not notices:
        return []
    suppressed = set(
        session.scalars(
            select(Suppression.email_key).where(Suppression.email_key.in_({n.email_key for n in notices}))
        )
    )
    domain = sender_domain(settings.sender)
    rows = [
        message_values(notice, settings.secret_key, domain, now)
        for notice in notices
        if not notice.undeliverable and notice.email_key not in suppressed
    ]
    if not rows:
        return []
    # One INSERT of many rows, no ORM object per row; the unique key skips a row that exists already.
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(OutboundMessage)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(OutboundMessage.id)
    )
    return list(session.scalars(statement, rows))


def idempotency_key(kind: str, event_id: int, recipient_id: int, cause: str) -> str:
    return f"{kind}:{event_id}:{recipient_id}:{cause}"


def message_values(notice: Notice, secret: str, domain: str, now: datetime) -> dict[str, Any]:
    """The columns of one personal message's outbox row, queued now."""
    event = notice.event
    return {
        "idempotency_key": idempotency_key(notice.kind, event.id, notice.recipient_id, notice.cause),
        "kind": notice.kind,
        "event_id": event.id,
        "recipient_id": notice.recipient_id,
        "invitation_id": notice.invitation_id,
        "sequence": event.sequence,
        "language": notice.language or event.language,
        "to_address": notice.address,
        "message_id": message_id(
            secret, domain, f"{notice.kind}.{notice.cause}", event.id, notice.recipient_id, event.sequence
        ),
        "status": MessageStatus.QUEUED,
        "attempts": 0,
        "last_reply": "",
        "created_at": now,
        "updated_at": now,
    }
