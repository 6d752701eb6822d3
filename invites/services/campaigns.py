"""Use case: start a campaign. Outbox rows are written and committed before any worker hears of them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    String,
    and_,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from invites.db.models import Campaign, Event, Invitation, OutboundMessage, Recipient, Suppression
from invites.db.segments import segment_conditions
from invites.domain.errors import InputError, NotFound
from invites.domain.reference import LANGUAGES
from invites.domain.segment import Segment
from invites.domain.states import Answer, CampaignState, EventStatus, MessageStatus
from invites.messages.compose import composer_for, message_id, sender_domain
from invites.messages.rendering import TemplateSet
from invites.messages.samples import sample_invitation, sample_recipient
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
    composer = composer_for(settings, event, kind, templates, now)
    sample, invitation = sample_recipient(), sample_invitation(kind)
    for language in LANGUAGES:
        composer.compose(sample, invitation, language)


# The kinds a campaign sends to a whole audience; the others go to one person when something happens.
CAMPAIGN_KINDS = ("invitation", "reminder", "update", "cancellation")


@dataclass(frozen=True)
class SendPlan:
    """What a send would do, counted without sending: of the people the segment selects (`selected`),
    those on the suppression list or undeliverable are left out; of the rest (`recipients`, the campaign's
    total), those who have this message already (`already`) get no second one, so `new` get it now."""

    kind: str
    segment: Segment
    selected: int
    recipients: int
    already: int
    suppressed: int

    @property
    def new(self) -> int:
        return self.recipients - self.already


def _check_kind(event: Event, kind: str) -> None:
    if kind not in CAMPAIGN_KINDS:
        raise InputError(f"a campaign sends one of {', '.join(CAMPAIGN_KINDS)}, not {kind!r}")
    if event.status == EventStatus.CANCELLED and kind != "cancellation":
        raise InputError(f"event {event.slug!r} is cancelled; only a cancellation can be sent")
    if kind == "cancellation" and event.status != EventStatus.CANCELLED:
        raise InputError(
            f"cancel the event with `invites event cancel {event.slug}`; it sends the cancellation"
        )


def _selected(event: Event, kind: str, segment: Segment) -> tuple[ColumnElement[bool], ...]:
    """The invitations a send of `kind` to `segment` is meant for (joined to their Recipient)."""
    return (
        Invitation.event_id == event.id,
        *segment_conditions(segment, event),
        *_audience_of_kind(kind, event.id),
    )


def _reachable() -> tuple[ColumnElement[bool], ...]:
    return (Recipient.undeliverable.is_(False), Recipient.email_key.not_in(select(Suppression.email_key)))


def plan_campaign(session: Session, event: Event, kind: str, segment: Segment | None = None) -> SendPlan:
    """Count who a send of `kind` to `segment` would reach, and who it leaves out; changes nothing.

    Raises InputError for a kind that cannot be sent to this event now, as `start_campaign` would.
    """
    segment = segment or Segment()
    _check_kind(event, kind)
    key = literal(f"{kind}:{event.id}:") + cast(Recipient.id, String) + literal(f":{event.sequence}")
    has_it = exists().where(OutboundMessage.idempotency_key == key)
    row = session.execute(
        select(
            func.count(),
            func.count().filter(and_(*_reachable())),
            func.count().filter(and_(*_reachable(), has_it)),
        )
        .select_from(Invitation)
        .join(Recipient, Recipient.id == Invitation.recipient_id)
        .where(*_selected(event, kind, segment))
    ).one()
    selected, recipients, already = (int(n or 0) for n in row)
    return SendPlan(kind, segment, selected, recipients, already, selected - recipients)


def _event(session: Session, slug: str) -> Event:
    event = session.scalar(select(Event).where(Event.slug == slug))
    if event is None:
        raise InputError(f"no event with slug {slug!r}")
    return event


def start_campaign(
    factory: sessionmaker[Session],
    event_slug: str,
    kind: str,
    settings: Settings,
    templates: TemplateSet,
    now: datetime,
    segment: Segment | None = None,
) -> StartedCampaign:
    """Create a campaign and one queued outbox row per invited recipient that has none for this message yet.

    With a segment, only the part of the audience it selects.

    Commits before returning; the caller enqueues the rows afterwards. Starting the same campaign twice
    adds no second row for anybody: the idempotency key is unique.
    """
    with factory() as session, session.begin():
        event = _event(session, event_slug)
        _check_kind(event, kind)
        check_templates(event, kind, templates, settings, now)
        campaign = Campaign(
            event_id=event.id,
            kind=kind,
            sequence=event.sequence,
            segment=(segment or Segment()).as_dict(),
            created_at=now,
        )
        session.add(campaign)
        session.flush()
        rows = _outbox_rows(session, event, kind, segment or Segment(), campaign.id, settings, now)
        new_rows = _insert_missing(session, rows)
        campaign.total = len(rows)
        started = StartedCampaign(campaign.id, event.id, kind, event.sequence, len(rows), new_rows)
    if new_rows >= ANALYZE_AFTER:
        refresh_statistics(factory)
    return started


def _outbox_rows(
    session: Session,
    event: Event,
    kind: str,
    segment: Segment,
    campaign_id: int,
    settings: Settings,
    now: datetime,
) -> list[dict[str, Any]]:
    """The queued outbox rows of a campaign, one per reachable recipient the segment selects."""
    audience = session.execute(
        select(Invitation.id, Recipient.id, Recipient.email, Recipient.language)
        .join(Recipient, Recipient.id == Invitation.recipient_id)
        .where(*_reachable(), *_selected(event, kind, segment))
        .order_by(Invitation.id)
    ).all()
    domain = sender_domain(settings.sender)
    return [
        {
            "idempotency_key": idempotency_key(kind, event.id, recipient_id, event.sequence),
            "kind": kind,
            "event_id": event.id,
            "recipient_id": recipient_id,
            "invitation_id": invitation_id,
            "campaign_id": campaign_id,
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


# PostgreSQL plans from statistics that autovacuum refreshes a minute or more after a big change. Until
# then, tables just filled by an import and a campaign look empty, and every batch of a worker would read
# all recipients (a hash join) instead of its hundred by key: six times the database's CPU per message.
ANALYZE_AFTER = 1000


def refresh_statistics(factory: sessionmaker[Session]) -> None:
    """ANALYZE the tables a campaign's delivery reads (PostgreSQL; SQLite plans well without)."""
    engine: Engine = factory.kw["bind"]
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(text("ANALYZE outbound_message, recipient, invitation"))


# Message kinds that put the meeting in a calendar.
CALENDAR_KINDS = ("invitation", "update", "reminder", "rsvp-confirmation")


def knows_of_event(event_id: int, *, or_in_flight: bool = False) -> ColumnElement[bool]:
    """Invitations whose recipient has the meeting: they answered (a registration, an answer recorded by
    the organiser), or were sent it for their calendar (with `or_in_flight`, also those whose message is
    in an SMTP conversation right now)."""
    statuses = [MessageStatus.SENT, MessageStatus.SENDING] if or_in_flight else [MessageStatus.SENT]
    return or_(
        Invitation.answer.is_not(None),
        exists().where(
            OutboundMessage.recipient_id == Invitation.recipient_id,
            OutboundMessage.event_id == event_id,
            OutboundMessage.kind.in_(CALENDAR_KINDS),
            OutboundMessage.status.in_(statuses),
        ),
    )


def _audience_of_kind(kind: str, event_id: int) -> list[ColumnElement[bool]]:
    """An update goes to those who have the meeting and have not declined; a cancellation to everyone who
    has it. Who was never sent the meeting hears of it with the invitation, as it is by then. Other kinds
    go to the whole audience."""
    if kind == "update":
        return [
            or_(Invitation.answer.is_(None), Invitation.answer != Answer.DECLINED),
            knows_of_event(event_id),
        ]
    if kind == "cancellation":
        return [knows_of_event(event_id, or_in_flight=True)]
    return []


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


class NothingToSend(InputError):
    """A send that would reach nobody new: everyone it selects has the message already, or nobody is
    selected. `plan` says which."""

    def __init__(self, plan: SendPlan) -> None:
        why = (
            f"all {plan.recipients} recipients have this message already"
            if plan.recipients
            else "the segment reaches nobody"
        )
        super().__init__(f"{why}; nothing was sent")
        self.plan = plan


class CountChanged(InputError):
    """The organiser confirmed a send to one number of people, and it would now reach another."""

    def __init__(self, plan: SendPlan, expected: int) -> None:
        super().__init__(f"the send would now reach {plan.new} people, not the {expected} confirmed")
        self.plan = plan


@dataclass(frozen=True)
class Sent:
    """What `send_campaign` did: the plan it counted, and unless it was a dry run, the campaign it started
    and how many of its rows were handed to the workers."""

    plan: SendPlan
    started: StartedCampaign | None = None
    handed: int = 0


def send_campaign(
    factory: sessionmaker[Session],
    slug: str,
    kind: str,
    settings: Settings,
    templates: TemplateSet,
    enqueue: Enqueue,
    now: datetime,
    segment: Segment | None = None,
    *,
    dry_run: bool = False,
    confirmed: int | None = None,
    allow_empty: bool = False,
) -> Sent:
    """The use case of sending a message to an event's audience, for the web page, the API, the CLI and the
    demo alike: count who it reaches, then (unless `dry_run`) create the campaign and its outbox rows, commit,
    and hand the rows to the workers.

    Raises InputError for an unknown event or a kind that cannot be sent now, NothingToSend when
    it would reach nobody new (unless `allow_empty`), and CountChanged when the organiser `confirmed` another
    number than it would now reach. Nothing is created when it raises.
    """
    with factory() as session:
        # The count's read ends with this session: on SQLite an open read would keep the send from committing.
        plan = plan_campaign(session, _event(session, slug), kind, segment)
    if dry_run:
        return Sent(plan)
    if plan.new == 0 and not allow_empty:
        raise NothingToSend(plan)
    if confirmed is not None and plan.new != confirmed:
        raise CountChanged(plan, confirmed)
    started = start_campaign(factory, slug, kind, settings, templates, now, segment)
    return Sent(plan, started, enqueue_queued(factory, started.scope, enqueue, settings.batch_size))


def queued_ids(factory: sessionmaker[Session], scope: MessageScope) -> Iterator[list[int]]:
    """The queued rows of a message, in batches of ids, read a batch at a time."""
    return ids_where(factory, (*scope.where(), OutboundMessage.status == MessageStatus.QUEUED))


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


def _campaign(session: Session, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id, with_for_update=True)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id}")
    return campaign


def pause_campaign(factory: sessionmaker[Session], campaign_id: int, now: datetime) -> Campaign:
    """Stop handing the campaign's unsent rows to SMTP. Messages already in an SMTP conversation finish;
    a running batch hands the rest back within seconds. Nothing is lost: `resume_campaign` goes on."""
    with factory() as session, session.begin():
        campaign = _campaign(session, campaign_id)
        if campaign.state != CampaignState.RUNNING:
            raise InputError(
                f"campaign {campaign_id} is {campaign.state.value}; only a running one can pause"
            )
        campaign.state = CampaignState.PAUSED
        return campaign


def resume_campaign(
    factory: sessionmaker[Session], campaign_id: int, enqueue: Enqueue, batch_size: int, now: datetime
) -> int:
    """Let a paused campaign run again, and hand its unsent rows to the workers; returns how many."""
    with factory() as session, session.begin():
        campaign = _campaign(session, campaign_id)
        if campaign.state != CampaignState.PAUSED:
            raise InputError(
                f"campaign {campaign_id} is {campaign.state.value}; only a paused one can resume"
            )
        campaign.state = CampaignState.RUNNING
    where = (
        OutboundMessage.campaign_id == campaign_id,
        OutboundMessage.status.in_([MessageStatus.QUEUED, MessageStatus.DEFERRED]),
    )
    count = 0
    for ids in ids_where(factory, where):
        for batch in chunked(ids, batch_size):
            enqueue(batch)
            count += len(batch)
    return count


def cancel_campaign(factory: sessionmaker[Session], campaign_id: int, now: datetime) -> int:
    """Cancel a campaign for good: its rows not yet sent become `cancelled` and are never sent. Rows in
    an SMTP conversation at that moment finish. Returns how many rows were cancelled."""
    with factory() as session, session.begin():
        campaign = _campaign(session, campaign_id)
        if campaign.state in (CampaignState.CANCELLED, CampaignState.DONE):
            raise InputError(f"campaign {campaign_id} is {campaign.state.value} already")
        campaign.state = CampaignState.CANCELLED
        campaign.finished_at = now
        result = session.execute(
            update(OutboundMessage)
            .where(
                OutboundMessage.campaign_id == campaign_id,
                OutboundMessage.status.in_([MessageStatus.QUEUED, MessageStatus.DEFERRED]),
            )
            .values(status=MessageStatus.CANCELLED, next_attempt_at=None, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)


def ids_where(factory: sessionmaker[Session], where: Sequence[ColumnElement[bool]]) -> Iterator[list[int]]:
    """The ids of the outbox rows matching `where`, in batches, read a batch at a time."""
    last = 0
    with factory() as session:
        while True:
            ids = list(
                session.scalars(
                    select(OutboundMessage.id)
                    .where(*where, OutboundMessage.id > last)
                    .order_by(OutboundMessage.id)
                    .limit(1000)
                )
            )
            if not ids:
                return
            last = ids[-1]
            yield ids


def campaign_progress(session: Session, campaign_id: int, now: datetime) -> dict[str, Any]:
    """A campaign's state, its rows per status, how many are done, the rate over the last minute
    (messages sent per second) and, at that rate, the seconds left."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id}")
    counts = dict(
        session.execute(
            select(OutboundMessage.status, func.count())
            .where(OutboundMessage.campaign_id == campaign_id)
            .group_by(OutboundMessage.status)
        ).all()
    )
    result: dict[str, Any] = {
        "campaign": campaign.id,
        "event_id": campaign.event_id,
        "kind": campaign.kind,
        "segment": campaign.segment,
        "created_at": campaign.created_at.isoformat(),
        "state": campaign.state.value,
        **{status.value: int(counts.get(status, 0)) for status in MessageStatus},
    }
    result["total"] = sum(int(n) for n in counts.values())
    result["done"] = sum(int(counts.get(s, 0)) for s in MessageStatus if s.final)
    window = timedelta(seconds=60)
    since = max(campaign.created_at, now - window)
    recent = session.scalar(
        select(func.count()).where(
            OutboundMessage.campaign_id == campaign_id,
            OutboundMessage.sent_at >= since,
            OutboundMessage.sent_at <= now,
        )
    )
    seconds = max((now - since).total_seconds(), 1.0)
    rate = (recent or 0) / seconds
    left = result["total"] - result["done"]
    result["rate"] = round(rate, 1)
    result["seconds_left"] = round(left / rate) if rate > 0 and left else (0 if not left else None)
    return result


def campaigns_of(session: Session, event_id: int) -> list[int]:
    return list(
        session.scalars(select(Campaign.id).where(Campaign.event_id == event_id).order_by(Campaign.id))
    )


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
