"""Reminder rules and the reminder sweep.

The pure part parses a rule ("-7d 10:00", "-2h", or an absolute local time), computes when it is due for an
event (wall-clock arithmetic in the event's zone, so daylight saving never shifts it), holds it out of the
quiet hours, and says when a missed one is no longer worth sending.

The services keep an event's rules, list who is due what at a moment, and run the sweep. The sweep writes
one outbox row per (rule, invitation) whose idempotency key, `reminder:{rule}:{invitation}`, is unique:
inserting it is the claim, so two beats, two concurrent sweeps or a sweep rerun after a crash add no
second row, and the delivery engine (claims, leases, its own sweep) sends each row once.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, String, and_, cast, exists, literal, or_, select, true
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from invites.campaigns import knows_of_event
from invites.compose import message_id, sender_domain
from invites.errors import InputError
from invites.models import (
    Answer,
    Event,
    EventStatus,
    Invitation,
    MessageStatus,
    OutboundMessage,
    Recipient,
    ReminderRule,
    Suppression,
)
from invites.rendering import KINDS
from invites.segments import Segment
from invites.settings import Settings

Enqueue = Callable[[list[int]], None]

# --- Rules: the pure part ---------------------------------------------------------------------------------


class Audience(enum.StrEnum):
    NO_ANSWER = "no-answer"
    ACCEPTED = "accepted"
    TENTATIVE = "tentative"
    WAITLIST = "waitlist"
    INVITED = "invited"


# Kinds a reminder may use: each carries the calendar as a REQUEST, so it never removes the meeting.
REMINDER_TEMPLATES = ("reminder", "invitation", "update")

OFFSET = re.compile(
    r"-\s*(?:(?P<days>\d+)\s*d)?\s*(?:(?P<hours>\d+)\s*h)?\s*(?:(?P<minutes>\d+)\s*m)?"
    r"(?:\s+(?P<clock>\d{1,2}[:.]\d{2}))?"
)


@dataclass(frozen=True)
class Offset:
    """Before the start: whole days on the calendar (then at `clock`, or at the start's time of day), and
    hours and minutes of elapsed time."""

    days: int = 0
    minutes: int = 0
    clock: time | None = None

    def __str__(self) -> str:
        parts = []
        if self.days:
            parts.append(f"{self.days}d")
        if self.minutes // 60:
            parts.append(f"{self.minutes // 60}h")
        if self.minutes % 60:
            parts.append(f"{self.minutes % 60}m")
        text = "-" + ("".join(parts) or "0d")
        return f"{text} {self.clock:%H:%M}" if self.clock else text


def parse_offset(text: str) -> Offset:
    """'-7d', '-1d 10:00', '-2h', '-1h30m', '-0d 08:00' → an Offset; raises InputError otherwise."""
    found = OFFSET.fullmatch(text.strip())
    if not found or not any(found.group(g) for g in ("days", "hours", "minutes")):
        raise InputError(f"{text!r} is not an offset before the start such as '-7d', '-1d 10:00' or '-2h'")
    days = int(found["days"] or 0)
    minutes = int(found["hours"] or 0) * 60 + int(found["minutes"] or 0)
    clock = None
    if found["clock"]:
        if minutes:
            raise InputError(f"{text!r}: a time of day goes with whole days only, as in '-1d 10:00'")
        try:
            clock = time.fromisoformat(found["clock"].replace(".", ":").zfill(5))
        except ValueError as exc:
            raise InputError(f"{text!r}: {found['clock']!r} is not a time of day") from exc
    return Offset(days, minutes, clock)


@dataclass(frozen=True)
class When:
    """An offset from the event's start, or an absolute moment."""

    offset: Offset | None = None
    at: datetime | None = None


def parse_when(value: str | datetime, zone: ZoneInfo) -> When:
    """A rule's `when`: an offset ('-7d 10:00') or an ISO date and time, local to `zone` unless it says
    otherwise."""
    if isinstance(value, str) and value.strip().startswith("-"):
        return When(offset=parse_offset(value))
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise InputError(
                f"{value!r} is neither an offset such as '-7d 10:00' nor a date and time (YYYY-MM-DDTHH:MM)"
            ) from exc
    if not isinstance(value, datetime):
        raise InputError(f"{value!r} is not an offset or a date and time")
    return When(at=value.replace(tzinfo=zone) if value.tzinfo is None else value)


def local(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """A wall-clock time in `zone`, in UTC. A time that does not exist (skipped when the clocks go
    forward) is read with the offset before the change, so 02:30 on that night is 03:30 summer time."""
    return datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)


def scheduled_at(when: When, starts_at: datetime, zone: ZoneInfo) -> datetime:
    """When the rule says the reminder is due, in UTC."""
    if when.at is not None:
        return when.at.astimezone(UTC)
    if when.offset is None:
        raise ValueError("a rule needs an offset or a moment")
    start = starts_at.astimezone(zone)
    day = start.date() - timedelta(days=when.offset.days)
    moment = local(day, when.offset.clock or start.time().replace(tzinfo=None), zone)
    return moment - timedelta(minutes=when.offset.minutes)


@dataclass(frozen=True)
class SendingHours:
    """The local hours in which reminders may go out, [start, end); outside them they are held."""

    start: time = time(8, 0)
    end: time = time(21, 0)

    @classmethod
    def parse(cls, text: str) -> SendingHours:
        """'08:00-21:00' → SendingHours; INVITES_REMINDER_HOURS."""
        try:
            first, last = (time.fromisoformat(part.strip().zfill(5)) for part in text.split("-"))
        except ValueError as exc:
            raise InputError(f"INVITES_REMINDER_HOURS {text!r} must be like '08:00-21:00'") from exc
        if not first < last:
            raise InputError(f"INVITES_REMINDER_HOURS {text!r}: the start must come before the end")
        return cls(first, last)

    def allows(self, moment: datetime, zone: ZoneInfo) -> bool:
        return self.start <= moment.astimezone(zone).time().replace(tzinfo=None) < self.end

    def next_allowed(self, moment: datetime, zone: ZoneInfo) -> datetime:
        """`moment` itself when it is inside the hours, else the next morning's start (the same morning
        when it is before the start)."""
        if self.allows(moment, zone):
            return moment
        wall = moment.astimezone(zone)
        day = wall.date() if wall.time().replace(tzinfo=None) < self.start else wall.date() + timedelta(1)
        return local(day, self.start, zone)


class State(enum.StrEnum):
    WAITING = "waiting"  # its time has not come
    DUE = "due"
    HELD = "held"  # due, but now is in the quiet hours: it goes out when they end
    PASSED = "passed"  # missed, and too late now: the event started or the rule's window closed


@dataclass(frozen=True)
class Window:
    """When a rule sends: from `send_from` (its time, moved out of the quiet hours) until `until`."""

    scheduled_at: datetime
    send_from: datetime
    until: datetime

    def state(self, now: datetime, hours: SendingHours, zone: ZoneInfo) -> State:
        if now >= self.until:
            return State.PASSED
        if now < self.send_from:
            return State.WAITING
        return State.DUE if hours.allows(now, zone) else State.HELD


def window(
    when: When, starts_at: datetime, zone: ZoneInfo, hours: SendingHours, max_late: timedelta | None
) -> Window:
    """A reminder missed (the service was down) is still sent late, up to `max_late` after its time (None:
    no limit), and never once the event has started."""
    scheduled = scheduled_at(when, starts_at, zone)
    send_from = hours.next_allowed(scheduled, zone)
    until = starts_at if max_late is None else min(starts_at, send_from + max_late)
    return Window(scheduled, send_from, until)


def parse_audience(value: str | Sequence[str]) -> tuple[Audience, ...]:
    """'no-answer', 'accepted,tentative' or a list of those → the audiences, in a stable order."""
    names = value.split(",") if isinstance(value, str) else list(value)
    found = set()
    for name in names:
        try:
            found.add(Audience(str(name).strip()))
        except ValueError:
            raise InputError(
                f"audience {name!r} is not one of {', '.join(a.value for a in Audience)}"
            ) from None
    if not found:
        raise InputError("a reminder needs an audience")
    return tuple(a for a in Audience if a in found)


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


@dataclass(frozen=True)
class RuleSpec:
    """A rule as an organiser writes it, in the event file or through the API."""

    name: str
    when: str
    audience: tuple[Audience, ...]
    template: str = "reminder"
    segment: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True

    @classmethod
    def parse(
        cls,
        name: str,
        when: str | datetime,
        audience: str | Sequence[str],
        template: str = "reminder",
        segment: dict[str, Any] | None = None,
        enabled: bool = True,
        zone: ZoneInfo | None = None,
    ) -> RuleSpec:
        """Checks every part, so a bad rule is refused when it is written, not when it is due."""
        name = name.strip()
        if not name or len(name) > 120:
            raise InputError("a reminder needs a name of at most 120 characters")
        parsed = parse_when(when, zone or ZoneInfo("Europe/Amsterdam"))
        text = str(parsed.offset) if parsed.offset else parsed.at.isoformat() if parsed.at else ""
        if template not in REMINDER_TEMPLATES or template not in KINDS:
            raise InputError(f"template {template!r} is not one of {', '.join(REMINDER_TEMPLATES)}")
        chosen_segment = Segment.parse(
            **{key: (segment or {}).get(key, ()) for key in ("roles", "municipalities", "tags", "languages")},
            attended_previous=bool((segment or {}).get("attended_previous", False)),
        )
        return cls(name, text, parse_audience(audience), template, chosen_segment.as_dict(), enabled)


DEFAULT_RULES = (
    RuleSpec("no-answer-7d", "-7d 10:00", (Audience.NO_ANSWER,)),
    RuleSpec("practical-1d", "-1d 10:00", (Audience.ACCEPTED, Audience.TENTATIVE)),
)


# --- Rules: the services ----------------------------------------------------------------------------------


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
            *Segment.from_dict(rule.segment).conditions(event),
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
