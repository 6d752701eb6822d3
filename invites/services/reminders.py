"""Reminder rules kept for an event, and the reminder sweep; the rules themselves are invites.domain.rules.

The services keep an event's rules, list who is due what at a moment, and run the sweep. The sweep writes
one outbox row per (rule, invitation) whose idempotency key, `reminder:{rule}:{invitation}`, is unique:
inserting it is the claim, so two beats, two concurrent sweeps or a sweep rerun after a crash add no
second row, and the delivery engine (claims, leases, its own sweep) sends each row once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, String, and_, cast, exists, literal, or_, select, true
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from invites.db.models import Event, Invitation, OutboundMessage, Recipient, ReminderRule, Suppression
from invites.db.segments import segment_conditions
from invites.domain.rules import (
    DEFAULT_RULES,
    Audience,
    RuleSpec,
    SendingHours,
    State,
    When,
    Window,
    parse_audience,
    parse_offset,
    parse_when,
    window,
)
from invites.domain.segment import Segment
from invites.domain.states import Answer, EventStatus, MessageStatus
from invites.messages.compose import message_id, sender_domain
from invites.services.campaigns import knows_of_event
from invites.settings import Settings

Enqueue = Callable[[list[int]], None]

# --- Rules: the services ----------------------------------------------------------------------------------


def audience_condition(audiences: Sequence[Audience]) -> ColumnElement[bool]:
    """Who on the invitation list a rule's audience means, as SQL on Invitation. An accept that waits for a
    place counts as the waiting list, not as accepted."""
    answer, position = Invitation.answer, Invitation.waitlist_position
    each = {
        Audience.INVITED: true(),
        Audience.NO_ANSWER: answer.is_(None),
        Audience.ACCEPTED: and_(answer == Answer.ACCEPTED, position.is_(None)),
        Audience.TENTATIVE: answer == Answer.TENTATIVE,
        Audience.WAITLIST: position.is_not(None),
    }
    return or_(*(each[a] for a in audiences))


def rule_when(rule: ReminderRule) -> When:
    if rule.at is not None:
        return When(at=rule.at)
    return When(offset=parse_offset(rule.offset))


def save_rule(session: Session, event: Event, spec: RuleSpec, now: datetime) -> ReminderRule:
    """Add the rule to the event, or change the event's rule of that name. The caller commits."""
    rule = session.scalar(
        select(ReminderRule).where(ReminderRule.event_id == event.id, ReminderRule.name == spec.name)
    )
    if rule is None:
        rule = ReminderRule(event_id=event.id, name=spec.name, created_at=now)
        session.add(rule)
    when = parse_when(spec.when, ZoneInfo(event.timezone))
    rule.offset = str(when.offset) if when.offset else ""
    rule.at = when.at
    rule.audience = ",".join(a.value for a in spec.audience)
    rule.segment = spec.segment
    rule.template = spec.template
    rule.enabled = spec.enabled
    session.flush()
    return rule


def sync_rules(session: Session, event: Event, specs: Sequence[RuleSpec] | None, now: datetime) -> None:
    """The rules of an event file: each saved by name. A file without rules gives a new event the default
    two (non-responders a week before, who is coming the day before); rules made through the API stay."""
    if specs is None:
        if session.scalar(select(ReminderRule.id).where(ReminderRule.event_id == event.id).limit(1)):
            return
        specs = DEFAULT_RULES
    for spec in specs:
        save_rule(session, event, spec, now)


def delete_rule(session: Session, event: Event, name: str) -> bool:
    """Remove the event's rule of that name; its sent reminders stay in the outbox. The caller commits."""
    rule = session.scalar(
        select(ReminderRule).where(ReminderRule.event_id == event.id, ReminderRule.name == name)
    )
    if rule is None:
        return False
    session.delete(rule)
    session.flush()
    return True


def event_rules(session: Session, event: Event) -> list[ReminderRule]:
    return list(
        session.scalars(
            select(ReminderRule).where(ReminderRule.event_id == event.id).order_by(ReminderRule.id)
        )
    )


def max_late(settings: Settings) -> timedelta | None:
    hours = settings.reminder_max_late_hours
    return timedelta(hours=hours) if hours > 0 else None


def rule_window(rule: ReminderRule, event: Event, settings: Settings) -> Window:
    zone = ZoneInfo(event.timezone)
    return window(
        rule_when(rule),
        event.starts_at,
        zone,
        SendingHours.parse(settings.reminder_hours),
        max_late(settings),
    )


def describe_rule(rule: ReminderRule, event: Event, settings: Settings, now: datetime) -> dict[str, Any]:
    """A rule as JSON, with when it sends and its state at `now`."""
    zone = ZoneInfo(event.timezone)
    span = rule_window(rule, event, settings)
    state = span.state(now, SendingHours.parse(settings.reminder_hours), zone)
    if not rule.enabled:
        state_text = "disabled"
    elif event.status == EventStatus.CANCELLED:
        state_text = "cancelled"
    else:
        state_text = state.value
    return {
        "id": rule.id,
        "name": rule.name,
        "when": rule.offset or (rule.at.astimezone(zone).isoformat() if rule.at else ""),
        "audience": rule.audience.split(","),
        "template": rule.template,
        "segment": {k: v for k, v in rule.segment.items() if v},
        "enabled": rule.enabled,
        "scheduled_at": span.scheduled_at.astimezone(zone).isoformat(),
        "send_from": span.send_from.astimezone(zone).isoformat(),
        "until": span.until.astimezone(zone).isoformat(),
        "state": state_text,
    }


# --- The sweep --------------------------------------------------------------------------------------------


def reminder_key(rule_id: int, invitation_id: int) -> str:
    return f"reminder:{rule_id}:{invitation_id}"


@dataclass(frozen=True)
class Due:
    """One reminder that is due: a rule's message to one invitee."""

    rule_id: int
    rule: str
    template: str
    event_id: int
    event: str
    invitation_id: int
    recipient_id: int
    email: str
    language: str
    answer: str
    scheduled_at: datetime
    send_from: datetime

    def as_dict(self, zone: ZoneInfo) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "template": self.template,
            "event": self.event,
            "invitation": self.invitation_id,
            "email": self.email,
            "language": self.language,
            "answer": self.answer or None,
            "scheduled_at": self.scheduled_at.astimezone(zone).isoformat(),
            "send_from": self.send_from.astimezone(zone).isoformat(),
        }


def due_reminders(
    session: Session, now: datetime, settings: Settings, event_id: int | None = None
) -> list[Due]:
    """Every (rule, invitation) that is due at `now` and has no outbox row yet: what a sweep at `now` would
    send. Nothing for a cancelled or started event, a disabled rule, or while the quiet hours hold it; and
    nothing to pending registrations, or to suppressed or undeliverable addresses."""
    hours = SendingHours.parse(settings.reminder_hours)
    found = session.execute(
        select(ReminderRule, Event)
        .join(Event, Event.id == ReminderRule.event_id)
        .where(
            ReminderRule.enabled.is_(True),
            Event.status != EventStatus.CANCELLED,
            Event.starts_at > now,
            *([Event.id == event_id] if event_id is not None else []),
        )
        .order_by(Event.id, ReminderRule.id)
    ).all()
    due: list[Due] = []
    for rule, event in found:
        span = rule_window(rule, event, settings)
        if span.state(now, hours, ZoneInfo(event.timezone)) == State.DUE:
            due.extend(_due_of_rule(session, rule, event, span))
    return due


def _due_of_rule(session: Session, rule: ReminderRule, event: Event, span: Window) -> list[Due]:
    """The reminders of a rule that is due: one to each invitee it selects who has no outbox row for it."""
    key = literal(f"reminder:{rule.id}:") + cast(Invitation.id, String)
    rows = session.execute(
        select(
            Invitation.id,
            Invitation.answer,
            Recipient.id,
            Recipient.email,
            Recipient.language,
        )
        .join(Recipient, Recipient.id == Invitation.recipient_id)
        .where(
            Invitation.event_id == event.id,
            Recipient.undeliverable.is_(False),
            Recipient.email_key.not_in(select(Suppression.email_key)),
            audience_condition(parse_audience(rule.audience)),
            knows_of_event(event.id),
            ~exists().where(OutboundMessage.idempotency_key == key),
            *segment_conditions(Segment.from_dict(rule.segment), event),
        )
        .order_by(Invitation.id)
    ).all()
    return [
        Due(
            rule.id,
            rule.name,
            rule.template,
            event.id,
            event.slug,
            invitation_id,
            recipient_id,
            email,
            language or event.language,
            answer.value if answer else "",
            span.scheduled_at,
            span.send_from,
        )
        for invitation_id, answer, recipient_id, email, language in rows
    ]


@dataclass(frozen=True)
class SweepResult:
    due: int
    created: int
    enqueued: int


def sweep_reminders(
    factory: sessionmaker[Session], enqueue: Enqueue, now: datetime, settings: Settings
) -> SweepResult:
    """Write an outbox row for every reminder due at `now`, commit, and hand the new rows to the workers.

    A row whose key exists already is skipped by the database (ON CONFLICT DO NOTHING), so a sweep that
    runs twice, or two at once, writes each reminder once; only the rows this sweep wrote are enqueued.
    An event cancelled while the sweep ran gets none: its rows are rolled back.
    """
    with factory() as session:
        due = due_reminders(session, now, settings)
        session.rollback()
    domain = sender_domain(settings.sender)
    created: list[int] = []
    by_event: dict[int, list[Due]] = {}
    for each in due:
        by_event.setdefault(each.event_id, []).append(each)
    for event_id, items in by_event.items():
        with factory() as session:
            sequence = session.get_one(Event, event_id).sequence
            mine = _insert_new(session, [_row(item, sequence, domain, settings, now) for item in items])
            # Read after the insert, under the event's row lock on PostgreSQL: a cancellation committed
            # meanwhile is seen here, and one that comes later waits for this commit and cancels these rows.
            status = session.scalar(select(Event.status).where(Event.id == event_id).with_for_update())
            if status == EventStatus.CANCELLED:
                session.rollback()
                continue
            session.commit()
        created.extend(mine)
    for start in range(0, len(created), settings.batch_size):
        enqueue(created[start : start + settings.batch_size])
    return SweepResult(len(due), len(created), len(created))


def _row(item: Due, sequence: int, domain: str, settings: Settings, now: datetime) -> dict[str, Any]:
    return {
        "idempotency_key": reminder_key(item.rule_id, item.invitation_id),
        "kind": item.template,
        "event_id": item.event_id,
        "recipient_id": item.recipient_id,
        "invitation_id": item.invitation_id,
        "reminder_rule_id": item.rule_id,
        "sequence": sequence,
        "language": item.language,
        "to_address": item.email,
        "message_id": message_id(
            settings.secret_key,
            domain,
            f"reminder.{item.rule_id}",
            item.event_id,
            item.recipient_id,
            sequence,
        ),
        "status": MessageStatus.QUEUED.value,
        "attempts": 0,
        "last_reply": "",
        "created_at": now,
        "updated_at": now,
    }


def _insert_new(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert the rows whose idempotency key is new; returns the ids of those this statement added."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    ids: list[int] = []
    for start in range(0, len(rows), 500):
        statement = (
            insert(OutboundMessage)
            .values(rows[start : start + 500])
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(OutboundMessage.id)
        )
        ids.extend(session.scalars(statement))
    return ids
