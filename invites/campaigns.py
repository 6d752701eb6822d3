"""Use case: start a campaign. Outbox rows are written and committed before any worker hears of them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from invites.compose import Composer, message_id, sender_domain
from invites.errors import InputError
from invites.models import (
    Campaign,
    Event,
    EventStatus,
    Invitation,
    MessageStatus,
    OutboundMessage,
    Recipient,
    Suppression,
)
from invites.rendering import TemplateSet
from invites.settings import Settings

Enqueue = Callable[[list[int]], None]


@dataclass(frozen=True)
class StartedCampaign:
    campaign_id: int
    event_id: int
    kind: str
    sequence: int
    total: int
    new_rows: int

    @property
    def scope(self) -> MessageScope:
        return MessageScope(self.event_id, self.kind, self.sequence)


@dataclass(frozen=True)
class MessageScope:
    """One message of one event to everybody: what a campaign sends, however often it was started."""

    event_id: int
    kind: str
    sequence: int

    def where(self) -> tuple[ColumnElement[bool], ...]:
        return (
            OutboundMessage.event_id == self.event_id,
            OutboundMessage.kind == self.kind,
            OutboundMessage.sequence == self.sequence,
        )


def idempotency_key(kind: str, event_id: int, recipient_id: int, sequence: int) -> str:
    return f"{kind}:{event_id}:{recipient_id}:{sequence}"


def check_templates(
    event: Event, kind: str, templates: TemplateSet, settings: Settings, now: datetime
) -> None:
    """Render the message once for a sample person in each language, so a template error stops the send
    before it starts instead of halfway through."""
    composer = Composer(
        event,
        kind,
        templates,
        sender=settings.sender,
        base_url=settings.base_url,
        secret=settings.secret_key,
        now=now,
    )
    sample = Recipient(
        id=0,
        email="voorbeeld@example.org",
        email_key="voorbeeld@example.org",
        display_name="Voorbeeld",
        first_name="",
        name_prefix="",
        last_name="",
        salutation="",
        role_key=None,
        role_label="",
        municipality_code=None,
        organisation="",
        language="nl",
        attributes={},
        tags=[],
    )
    invitation = Invitation(id=0, public_id="sample", token_version=1)
    for language in ("nl", "en"):
        composer.compose(sample, invitation, language)


def start_campaign(
    factory: sessionmaker[Session],
    event_slug: str,
    kind: str,
    settings: Settings,
    templates: TemplateSet,
    now: datetime,
) -> StartedCampaign:
    """Create a campaign and one queued outbox row per invited recipient that has none for this message yet.

    Commits before returning; the caller enqueues the rows afterwards. Starting the same campaign twice
    adds no second row for anybody: the idempotency key is unique.
    """
    with factory() as session, session.begin():
        event = session.scalar(select(Event).where(Event.slug == event_slug))
        if event is None:
            raise InputError(f"no event with slug {event_slug!r}")
        if event.status == EventStatus.CANCELLED and kind != "cancellation":
            raise InputError(f"event {event_slug!r} is cancelled; only a cancellation can be sent")
        check_templates(event, kind, templates, settings, now)
        campaign = Campaign(event_id=event.id, kind=kind, sequence=event.sequence, created_at=now)
        session.add(campaign)
        session.flush()
        suppressed = select(Suppression.email_key)
        audience = session.execute(
            select(Invitation.id, Recipient.id, Recipient.email, Recipient.language)
            .join(Recipient, Recipient.id == Invitation.recipient_id)
            .where(
                Invitation.event_id == event.id,
                Recipient.undeliverable.is_(False),
                Recipient.email_key.not_in(suppressed),
            )
            .order_by(Invitation.id)
        ).all()
        domain = sender_domain(settings.sender)
        rows = [
            {
                "idempotency_key": idempotency_key(kind, event.id, recipient_id, event.sequence),
                "kind": kind,
                "event_id": event.id,
                "recipient_id": recipient_id,
                "invitation_id": invitation_id,
                "campaign_id": campaign.id,
                "sequence": event.sequence,
                "language": language or event.language,
                "to_address": email,
                "message_id": message_id(
                    settings.secret_key, domain, kind, event.id, recipient_id, event.sequence
                ),
                "status": MessageStatus.QUEUED.value,
                "attempts": 0,
                "last_reply": "",
                "created_at": now,
                "updated_at": now,
            }
            for invitation_id, recipient_id, email, language in audience
        ]
        new_rows = _insert_missing(session, rows)
        campaign.total = len(rows)
        return StartedCampaign(campaign.id, event.id, kind, event.sequence, len(rows), new_rows)


def _insert_missing(session: Session, rows: list[dict[str, object]]) -> int:
    """Insert the rows whose idempotency key is new; returns how many were added."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    keys = [row["idempotency_key"] for row in rows]
    existing = 0
    for start in range(0, len(rows), 500):
        existing += (
            session.scalar(
                select(func.count()).where(OutboundMessage.idempotency_key.in_(keys[start : start + 500]))
            )
            or 0
        )
        statement = insert(OutboundMessage).on_conflict_do_nothing(index_elements=["idempotency_key"])
        session.connection().execute(statement, rows[start : start + 500])
    return len(rows) - existing


def queued_ids(factory: sessionmaker[Session], scope: MessageScope) -> Iterator[list[int]]:
    """The queued rows of a message, in batches of ids, read a batch at a time."""
    last = 0
    with factory() as session:
        while True:
            ids = list(
                session.scalars(
                    select(OutboundMessage.id)
                    .where(
                        *scope.where(),
                        OutboundMessage.status == MessageStatus.QUEUED,
                        OutboundMessage.id > last,
                    )
                    .order_by(OutboundMessage.id)
                    .limit(1000)
                )
            )
            if not ids:
                return
            last = ids[-1]
            yield ids


def enqueue_queued(
    factory: sessionmaker[Session], scope: MessageScope, enqueue: Enqueue, batch_size: int
) -> int:
    """Hand a message's queued rows to the workers in batches; returns how many ids were handed on."""
    count = 0
    for ids in queued_ids(factory, scope):
        for batch in chunked(ids, batch_size):
            enqueue(batch)
            count += len(batch)
    return count


def chunked(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def progress(session: Session, scope: MessageScope) -> dict[str, int]:
    """How many of a message's rows are in each status, plus the total and those done for good."""
    counts = dict(
        session.execute(
            select(OutboundMessage.status, func.count())
            .where(*scope.where())
            .group_by(OutboundMessage.status)
        ).all()
    )
    result = {status.value: int(counts.get(status, 0)) for status in MessageStatus}
    result["total"] = sum(result.values())
    result["done"] = sum(result[s.value] for s in MessageStatus if s.final)
    return result
