"""Use cases of the delivery engine: deliver a batch of outbox rows, and sweep for rows that need a push.

A row is claimed (status `sending` plus a lease, taken atomically) before any SMTP conversation, and its
outcome is committed right after the server's reply. A row can therefore be sent twice only when a worker
dies between the server's 250 and that commit; both copies then carry the same Message-ID.

Within a batch, as many messages are in flight as the mailer has connections. A connection's next message
is composed, and its envelope written behind this one's body, before this outcome is known; but its body,
what makes the server accept it, goes out only once this outcome is committed (the commits of several are
grouped into one transaction). So a worker that dies can have sent at most one message per connection
without recording it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Engine, Table, and_, bindparam, exists, or_, select, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from invites.adapters.mailer import Mailer, Outgoing, SendOutcome
from invites.adapters.throttle import Throttle
from invites.db.models import Campaign, Event, Invitation, OutboundMessage, ProgrammeItem, Recipient
from invites.domain.errors import InputError
from invites.domain.retry import after_deferral, give_up_at, parse_schedule
from invites.domain.states import Answer, CampaignState, MessageStatus
from invites.messages.compose import Composed, Composer, composer_for, sender_domain
from invites.messages.rendering import TemplateSet
from invites.services.bounces import verp_address
from invites.settings import Settings

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Enqueue = Callable[[list[int]], None]

# A batch hands rows due again within this long back to the queue itself (a short countdown); later
# ones are left to the sweep, so no task ever waits in Redis long enough to outlive its visibility timeout.
REQUEUE_WITHIN = 120.0
# How often a running batch looks whether its campaign was paused or cancelled.
CAMPAIGN_CHECK_SECONDS = 2.0
# How long a worker reuses a composer across batches (see `Composers`).
COMPOSER_REUSE_SECONDS = 60.0
STOPPED = (CampaignState.PAUSED, CampaignState.CANCELLED)


def campaign_live() -> ColumnElement[bool]:
    """Rows whose campaign is neither paused nor cancelled (rows without a campaign always are)."""
    return ~exists().where(Campaign.id == OutboundMessage.campaign_id, Campaign.state.in_(STOPPED))


def claimable(now: datetime) -> ColumnElement[bool]:
    return and_(
        or_(
            OutboundMessage.status == MessageStatus.QUEUED,
            and_(OutboundMessage.status == MessageStatus.DEFERRED, OutboundMessage.next_attempt_at <= now),
            and_(OutboundMessage.status == MessageStatus.SENDING, OutboundMessage.lease_until < now),
        ),
        campaign_live(),
    )


def claim(session: Session, ids: Sequence[int], now: datetime, lease: timedelta) -> list[int]:
    """Atomically take the rows among `ids` that nobody else holds; returns the ids now ours.

    PostgreSQL skips rows another worker has locked (FOR UPDATE SKIP LOCKED); SQLite serialises writers,
    so the conditional UPDATE alone is atomic there. Rows of a paused or cancelled campaign are left alone.
    """
    if not ids:
        return []
    candidates = select(OutboundMessage.id).where(OutboundMessage.id.in_(ids), claimable(now))
    if session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(of=OutboundMessage, skip_locked=True)
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
    # Rows handed back unsent: throttled, out of lease time, or their campaign was paused.
    released: int = 0
    # Rows due again soon, and in how many seconds: the caller re-enqueues them with that countdown.
    again: tuple[int, ...] = ()
    again_in: float = 0.0


@dataclass(frozen=True, slots=True)
class _Message:
    """What a batch reads of an outbox row."""

    id: int
    kind: str
    language: str
    message_id: str
    to_address: str
    event_id: int
    campaign_id: int | None
    attempts: int
    last_reply: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class _Person:
    """What a batch reads of a recipient (`rendering.Person`)."""

    id: int
    email: str
    first_name: str
    name_prefix: str
    last_name: str
    display_name: str
    salutation: str
    role_key: str | None
    role_label: str
    municipality_code: str | None
    organisation: str
    language: str
    attributes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Invited:
    """What a batch reads of an invitation (`compose.Invited`)."""

    public_id: str
    token_version: int
    answer: Answer | None
    waitlist_position: int | None


@dataclass(frozen=True, slots=True)
class _Row:
    message: _Message
    recipient: _Person
    invitation: _Invited | None
    event: Event
    deadline: datetime


class Composers:
    """The composers of a worker process, kept across its batches.

    Building one renders and proves every template of its kind (milliseconds: a batch's worth of
    messages). One is reused for the same settings, templates and an event unchanged in every column and
    programme item, and for at most COMPOSER_REUSE_SECONDS, as its Date header and the calendar's DTSTAMP
    are the time it was built.
    """

    def __init__(self) -> None:
        self._built: dict[tuple[int, str], _Built] = {}

    def get(
        self, settings: Settings, event: Event, kind: str, templates: TemplateSet, now: datetime
    ) -> Composer:
        state = _event_state(event)
        built = self._built.get((event.id, kind))
        if (
            built is None
            or built.settings is not settings
            or built.templates is not templates
            or built.state != state
            or not _fresh(built, now)
        ):
            for key, old in list(self._built.items()):
                if not _fresh(old, now):
                    del self._built[key]
            composer = composer_for(settings, event, kind, templates, now)
            built = self._built[(event.id, kind)] = _Built(settings, templates, state, now, composer)
        return built.composer


@dataclass(frozen=True)
class _Built:
    settings: Settings
    templates: TemplateSet
    state: tuple[Any, ...]
    at: datetime
    composer: Composer


def _fresh(built: _Built, now: datetime) -> bool:
    return 0 <= (now - built.at).total_seconds() <= COMPOSER_REUSE_SECONDS


_EVENT_COLUMNS = tuple(column.key for column in cast(Table, Event.__table__).columns)
_ITEM_COLUMNS = tuple(column.key for column in cast(Table, ProgrammeItem.__table__).columns)


def _event_state(event: Event) -> tuple[Any, ...]:
    """Everything a composer reads of an event: its columns and its programme."""
    return (
        tuple(getattr(event, name) for name in _EVENT_COLUMNS),
        tuple(tuple(getattr(item, name) for name in _ITEM_COLUMNS) for item in event.programme),
    )


# One outcome, as the bound parameters of the UPDATE that records it.
_OUTBOX = cast(Table, OutboundMessage.__table__)
_RECORD = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("row_id"))
    .values(
        status=bindparam("new_status"),
        attempts=bindparam("new_attempts"),
        last_reply=bindparam("new_reply"),
        next_attempt_at=bindparam("new_next"),
        sent_at=bindparam("new_sent_at"),
        lease_until=None,
        updated_at=bindparam("new_updated_at"),
    )
)


class _Recorder:
    """Commits outcomes as they come, grouping those that arrive while a commit runs into the next one.

    `record` returns only once its outcome is committed.
    """

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.engine: Engine = factory.kw["bind"]
        self.pending: list[dict[str, Any]] = []
        self.waiting: asyncio.Future[None] | None = None
        self.writer: asyncio.Task[None] | None = None

    async def record(self, change: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        self.pending.append(change)
        if self.waiting is None:
            self.waiting = loop.create_future()
        waiting = self.waiting
        if self.writer is None or self.writer.done():
            self.writer = loop.create_task(self._write_all())
        await asyncio.shield(waiting)

    async def _write_all(self) -> None:
        while self.pending:
            changes, self.pending = self.pending, []
            waiting, self.waiting = self.waiting, None
            assert waiting is not None
            try:
                await asyncio.to_thread(self._write, changes)
            except Exception as exc:  # every waiter hears of it; the batch then fails as a whole
                waiting.set_exception(exc)
                waiting.exception()  # marks it retrieved when nobody waits any more
            else:
                waiting.set_result(None)

    def _write(self, changes: list[dict[str, Any]]) -> None:
        # Core executemany on a connection of the sessions' engine: one statement, many rows, no Session.
        with self.engine.begin() as connection:
            connection.execute(_RECORD, changes)


@dataclass
class _Batch:
    """The state shared by the concurrent senders of one batch."""

    rows: list[_Row]
    settings: Settings
    templates: TemplateSet
    shared: Composers
    delays: tuple[int, ...]
    stop_at: datetime
    envelope_domain: str | None
    counts: dict[str, int] = field(
        default_factory=lambda: {"sent": 0, "deferred": 0, "failed": 0, "released": 0}
    )
    again: dict[int, datetime] = field(default_factory=dict)
    stopped: dict[int, CampaignState] = field(default_factory=dict)
    checked_at: float = 0.0
    composers: dict[tuple[int, str], Composer] = field(default_factory=dict)

    def composer(self, event: Event, kind: str, now: datetime) -> Composer:
        """The batch's composer for an event and kind: looked up among the shared ones once a batch."""
        key = (event.id, kind)
        composer = self.composers.get(key)
        if composer is None:
            composer = self.composers[key] = self.shared.get(self.settings, event, kind, self.templates, now)
        return composer


def deliver_batch(
    factory: sessionmaker[Session],
    ids: Sequence[int],
    mailer: Mailer,
    settings: Settings,
    templates: TemplateSet,
    clock: Clock,
    *,
    throttle: Throttle | None = None,
) -> BatchResult:
    """Claim the given outbox rows, compose and send each, and record every outcome as it happens.

    Runs its own event loop and closes the mailer and the throttle at the end; a worker that keeps its
    connections between batches awaits `deliver` on its own loop instead.
    """

    async def run() -> BatchResult:
        try:
            return await deliver(factory, ids, mailer, settings, templates, clock, throttle=throttle)
        finally:
            close = getattr(mailer, "close", None)
            if close is not None:
                await close()
            if throttle is not None:
                await throttle.close()

    return asyncio.run(run())


async def deliver(
    factory: sessionmaker[Session],
    ids: Sequence[int],
    mailer: Mailer,
    settings: Settings,
    templates: TemplateSet,
    clock: Clock,
    *,
    throttle: Throttle | None = None,
    verp: bool = True,
    composers: Composers | None = None,
) -> BatchResult:
    """Claim the given outbox rows and deliver them through `mailer`, `mailer.size` at a time.

    Changes each claimed row to sent, deferred (with its next attempt), failed (with the reason) or, when
    it could not be tried (throttled, out of lease time, campaign paused or cancelled), back to where it
    was. A deferral past the message's deadline fails it instead.
    """
    now = clock()
    lease = timedelta(seconds=settings.lease_seconds)
    mine, rows = _claim_rows(factory, ids, now, lease, settings)
    if not mine:
        return BatchResult(0, 0, 0, 0)
    batch = _new_batch(rows, settings, templates, composers, now, lease, verp)
    recorder = _Recorder(factory)
    queue = list(reversed(rows))

    async def next_message() -> _Ready | None:
        """The next row of the queue that goes out, composed; rows that cannot are recorded on the way."""
        while queue:
            ready = await _prepare(queue.pop(), batch, recorder, throttle, clock, factory)
            if ready is not None:
                return ready
        return None

    async def sender() -> None:
        # The next message is composed before this one's body goes out, so that its envelope can follow
        # in the same write; not with a throttle, whose slot for it may come only after a wait.
        ahead = throttle is None
        async with mailer.connection() as connection:
            current = await next_message()
            while current is not None:
                following = await next_message() if ahead else None
                message = current.outgoing
                outcome = await connection.send(
                    message.sender,
                    message.recipient,
                    message.data,
                    then=following.outgoing if following is not None else None,
                )
                await _record(current.row, outcome, batch, recorder, clock())
                current = following if ahead else await next_message()

    # A sender that fails stops the others; the rows left in `sending` come back through the sweep.
    async with asyncio.TaskGroup() as senders:
        for _ in range(max(1, min(mailer.size, len(rows)))):
            senders.create_task(sender())
    return _result(len(mine), batch, clock)


def _claim_rows(
    factory: sessionmaker[Session], ids: Sequence[int], now: datetime, lease: timedelta, settings: Settings
) -> tuple[list[int], list[_Row]]:
    """Claim the rows among `ids` that nobody else holds (committed), and read what sending them takes."""
    with factory() as session:
        with session.begin():
            mine = claim(session, ids, now, lease)
        if not mine:
            return [], []
        return mine, _load(session, mine, settings)


def _new_batch(
    rows: list[_Row],
    settings: Settings,
    templates: TemplateSet,
    composers: Composers | None,
    now: datetime,
    lease: timedelta,
    verp: bool,
) -> _Batch:
    # No send starts so late that it could still run when the lease ends and another worker may claim.
    margin = max(lease - timedelta(seconds=settings.smtp_timeout + 5), lease / 2)
    return _Batch(
        rows=rows,
        settings=settings,
        templates=templates,
        # A worker passes its own (Runtime.composers), kept across batches; without, this batch's alone.
        shared=composers or Composers(),
        delays=parse_schedule(settings.retry_schedule),
        stop_at=now + margin,
        envelope_domain=(settings.bounce_domain or sender_domain(settings.sender)) if verp else None,
    )


def _result(claimed: int, batch: _Batch, clock: Clock) -> BatchResult:
    """The batch's counts, with its rows due again within REQUEUE_WITHIN and the seconds until the first."""
    again: tuple[int, ...] = ()
    again_in = 0.0
    if batch.again:
        horizon = clock() + timedelta(seconds=REQUEUE_WITHIN)
        soon = {row_id: due for row_id, due in batch.again.items() if due <= horizon}
        if soon:
            again = tuple(sorted(soon))
            again_in = max(0.0, (min(soon.values()) - clock()).total_seconds())
    counts = batch.counts
    return BatchResult(
        claimed, counts["sent"], counts["deferred"], counts["failed"], counts["released"], again, again_in
    )


def _columns(table: Table, plain: type[Any]) -> list[Any]:
    return [table.c[each.name] for each in fields(plain)]


_RECIPIENT = cast(Table, Recipient.__table__)
_INVITATION = cast(Table, Invitation.__table__)
_MESSAGE_COLUMNS = _columns(_OUTBOX, _Message)
_PERSON_COLUMNS = _columns(_RECIPIENT, _Person)
_INVITED_COLUMNS = _columns(_INVITATION, _Invited)
# The rows of a batch as plain values (Core, not ORM objects: a third of the time), in id order.
_LOAD = (
    select(*_MESSAGE_COLUMNS, *_PERSON_COLUMNS, _INVITATION.c.id, *_INVITED_COLUMNS)
    .join_from(_OUTBOX, _RECIPIENT, _RECIPIENT.c.id == _OUTBOX.c.recipient_id)
    .outerjoin(_INVITATION, _INVITATION.c.id == _OUTBOX.c.invitation_id)
    .where(_OUTBOX.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_OUTBOX.c.id)
)


def _load(session: Session, ids: list[int], settings: Settings) -> list[_Row]:
    found = session.connection().execute(_LOAD, {"ids": ids}).all()
    # Each event once, not on every row of its batch; the composers need its programme too.
    events = {
        event.id: event
        for event in session.scalars(
            select(Event)
            .where(Event.id.in_({row.event_id for row in found}))
            .options(selectinload(Event.programme))
        )
    }
    session.commit()
    message_end = len(_MESSAGE_COLUMNS)
    person_end = message_end + len(_PERSON_COLUMNS)
    rows = []
    for values in found:
        message = _Message(*values[:message_end])
        person = _Person(*values[message_end:person_end])
        invited = _Invited(*values[person_end + 1 :]) if values[person_end] is not None else None
        event = events[message.event_id]
        deadline = give_up_at(event.starts_at, message.created_at, settings.message_lifetime)
        rows.append(_Row(message, person, invited, event, deadline))
    return rows


@dataclass(frozen=True)
class _Ready:
    """A claimed row, composed and cleared to go."""

    row: _Row
    outgoing: Outgoing


async def _prepare(
    row: _Row,
    batch: _Batch,
    recorder: _Recorder,
    throttle: Throttle | None,
    clock: Clock,
    factory: sessionmaker[Session],
) -> _Ready | None:
    """The row's message, ready to send; or None when the row was settled without sending: released
    (out of time, campaign stopped, throttled) or failed (it could not be composed)."""
    message = row.message
    now = clock()
    if now >= batch.stop_at:
        await _release(row, batch, recorder, MessageStatus.DEFERRED, now, now, "")
        return None
    stopped = await _campaign_stopped(message.campaign_id, batch, factory)
    if stopped is not None:
        status = MessageStatus.CANCELLED if stopped == CampaignState.CANCELLED else MessageStatus.QUEUED
        await _release(row, batch, recorder, status, now, None, "")
        return None
    composed = _compose(row, batch, now)
    if isinstance(composed, SendOutcome):
        await _record(row, composed, batch, recorder, clock())
        return None
    settings = batch.settings
    if throttle is not None:
        slot = await throttle.reserve(_domain(message.to_address), settings.throttle_max_wait)
        if not slot.granted:
            due = clock() + timedelta(seconds=slot.wait)
            await _release(row, batch, recorder, MessageStatus.DEFERRED, clock(), due, "")
            return None
        if slot.wait > 0:
            await asyncio.sleep(slot.wait)
    envelope_from = (
        verp_address(settings.secret_key, message.id, batch.envelope_domain)
        if batch.envelope_domain
        else settings.sender
    )
    return _Ready(row, Outgoing(envelope_from, composed.to, composed.data))


def _compose(row: _Row, batch: _Batch, now: datetime) -> Composed | SendOutcome:
    """The row's message, or the failure to record when it cannot be composed."""
    message = row.message
    try:
        if row.invitation is None:
            raise InputError("the message has no invitation to compose from")
        composer = batch.composer(row.event, message.kind, now)
        # The row's Message-ID is the message's identity: a resend after a crash carries the same one.
        return composer.compose(
            row.recipient, row.invitation, message.language, message_id=message.message_id
        )
    except InputError as exc:
        return SendOutcome(MessageStatus.FAILED, f"could not compose: {exc}")
    except Exception as exc:  # a bug in a template or the composer: fail this row, not the whole batch
        log.exception("could not compose message %s", message.id, extra=log_ids(message))
        return SendOutcome(MessageStatus.FAILED, f"could not compose: {type(exc).__name__}: {exc}")


async def _campaign_stopped(
    campaign_id: int | None, batch: _Batch, factory: sessionmaker[Session]
) -> CampaignState | None:
    """Whether the row's campaign was paused or cancelled since the batch began (looked up every
    CAMPAIGN_CHECK_SECONDS, for all of the batch's campaigns at once)."""
    if campaign_id is None:
        return None
    loop = asyncio.get_running_loop()
    if loop.time() - batch.checked_at >= CAMPAIGN_CHECK_SECONDS:
        batch.checked_at = loop.time()
        ids = {row.message.campaign_id for row in batch.rows if row.message.campaign_id is not None}

        def look() -> dict[int, CampaignState]:
            with factory() as session:
                found = session.execute(
                    select(Campaign.id, Campaign.state).where(
                        Campaign.id.in_(ids), Campaign.state.in_(STOPPED)
                    )
                )
                return {campaign: state for campaign, state in found}

        batch.stopped = await asyncio.to_thread(look)
    return batch.stopped.get(campaign_id)


def log_ids(message: _Message) -> dict[str, int | None]:
    """The ids a log line about a message carries, as fields of their own in JSON logs."""
    return {"message_id": message.id, "campaign_id": message.campaign_id, "event_id": message.event_id}


def _domain(address: str) -> str:
    return address.rsplit("@", 1)[-1].lower()


async def _release(
    row: _Row,
    batch: _Batch,
    recorder: _Recorder,
    status: MessageStatus,
    now: datetime,
    due: datetime | None,
    reply: str,
) -> None:
    """Hand a claimed row back unsent; the claim's attempt does not count."""
    message = row.message
    await recorder.record(
        {
            "row_id": message.id,
            "new_status": status,
            "new_attempts": max(0, message.attempts - 1),
            "new_reply": reply or message.last_reply,
            "new_next": due,
            "new_sent_at": None,
            "new_updated_at": now,
        }
    )
    batch.counts["released"] += 1
    if due is not None:
        batch.again[message.id] = due


async def _record(row: _Row, outcome: SendOutcome, batch: _Batch, recorder: _Recorder, now: datetime) -> None:
    message = row.message
    status = outcome.status
    reply = outcome.reply[:2000]
    due: datetime | None = None
    if status == MessageStatus.DEFERRED:
        due = after_deferral(message.attempts, now, row.deadline, batch.delays)
        if due is None:
            status = MessageStatus.FAILED
            reply = f"gave up after {message.attempts} attempts: {reply}"[:2000]
    await recorder.record(
        {
            "row_id": message.id,
            "new_status": status,
            "new_attempts": message.attempts,
            "new_reply": reply,
            "new_next": due,
            "new_sent_at": now if status == MessageStatus.SENT else None,
            "new_updated_at": now,
        }
    )
    batch.counts[status.value] += 1
    if due is not None:
        batch.again[message.id] = due
    # Every outcome is in the outbox; the log tells of the ones to look at, and of each sent one only at
    # DEBUG (`invites worker --loglevel DEBUG`): at thousands a second, a line each costs a few percent.
    log.log(
        logging.DEBUG if status == MessageStatus.SENT else logging.INFO,
        "message %s to %s: %s (%s)",
        message.id,
        message.to_address,
        status.value,
        reply[:200],
        extra=log_ids(message),
    )


def finish_campaigns(session: Session, now: datetime) -> None:
    """A running campaign whose every row is sent, failed, bounced or cancelled is done."""
    rows = select(OutboundMessage.id).where(OutboundMessage.campaign_id == Campaign.id)
    open_rows = rows.where(OutboundMessage.status.not_in([s for s in MessageStatus if s.final]))
    session.execute(
        update(Campaign)
        .where(Campaign.state == CampaignState.RUNNING, exists(rows), ~exists(open_rows))
        .values(state=CampaignState.DONE, finished_at=now)
        .execution_options(synchronize_session=False)
    )


def sweep(factory: sessionmaker[Session], enqueue: Enqueue, now: datetime, settings: Settings) -> int:
    """Find outbox rows that need a worker and hand them on: deferred rows whose retry is due, rows stuck
    in `sending` past their lease, and `queued` rows whose task was lost. Rows of a cancelled campaign
    that are still unsent become cancelled; those of a paused one wait. Returns how many ids went out.

    Handing a row on twice is harmless: only one worker can claim it.
    """
    stale = now - timedelta(seconds=settings.lease_seconds)
    condition = and_(
        or_(
            and_(OutboundMessage.status == MessageStatus.QUEUED, OutboundMessage.updated_at < stale),
            and_(OutboundMessage.status == MessageStatus.DEFERRED, OutboundMessage.next_attempt_at <= now),
            and_(OutboundMessage.status == MessageStatus.SENDING, OutboundMessage.lease_until < now),
        ),
        campaign_live(),
    )
    count = 0
    last = 0
    with factory() as session:
        session.execute(
            update(OutboundMessage)
            .where(
                OutboundMessage.campaign_id.in_(
                    select(Campaign.id).where(Campaign.state == CampaignState.CANCELLED)
                ),
                or_(
                    OutboundMessage.status.in_([MessageStatus.QUEUED, MessageStatus.DEFERRED]),
                    and_(OutboundMessage.status == MessageStatus.SENDING, OutboundMessage.lease_until < now),
                ),
            )
            .values(status=MessageStatus.CANCELLED, lease_until=None, next_attempt_at=None, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        finish_campaigns(session, now)
        session.commit()
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
