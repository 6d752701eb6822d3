"""Reminder rules kept for an event, and the reminder sweep; the rules themselves are invites.domain.rules.

The services keep an event's rules, list who is due what at a moment, and run the sweep. The sweep writes
one outbox row per (rule, invitation) whose idempotency key, `reminder:{rule}:{invitation}`, is unique:
inserting it is the claim, so two beats, two concurrent sweeps or a sweep rerun after a crash add no
second row, and the delivery engine (claims, leases, its own sweep) sends each row once.

A rule the sweep cannot use (a row stored by an older version with an offset beyond the limits, a template
that is not a reminder's) is logged with its event and name, its error is kept on the rule for the reminders
page and the API, and the sweep goes on with every other rule and event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, String, and_, cast, exists, literal, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from invites.db.models import Event, Invitation, OutboundMessage, Recipient, ReminderRule, Suppression
from invites.db.segments import segment_conditions
from invites.domain.rules import (
    DEFAULT_RULES,
    REMINDER_TEMPLATES,
    Audience,
    RuleError,
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
log = logging.getLogger(__name__)
# Errors of the database itself, not of one rule: the sweep stops, and the next beat runs it again.
DATABASE_DOWN = (OperationalError, InterfaceError)

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
    # A rule written again is checked again: an error of the old one no longer applies.
    rule.last_error = ""
    rule.last_error_at = None
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


def keep_rule(
    factory: sessionmaker[Session], settings: Settings, event_id: int, spec: RuleSpec, now: datetime
) -> dict[str, Any]:
    """The use case of saving a rule from the reminders page or the API (`save_rule`), in a transaction of
    its own; returns the rule as `describe_rule` tells it."""
    with factory() as session:
        event = session.get_one(Event, event_id)
        rule = save_rule(session, event, spec, now)
        described = describe_rule(rule, event, settings, now)
        session.commit()
    return described


def remove_rule(factory: sessionmaker[Session], event_id: int, name: str) -> bool:
    """The use case of deleting a rule (`delete_rule`), in a transaction of its own; False when the event
    has no rule of that name."""
    with factory() as session:
        removed = delete_rule(session, session.get_one(Event, event_id), name)
        session.commit()
    return removed


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


def checked_window(rule: ReminderRule, event: Event, settings: Settings) -> Window:
    """The rule's window, once every part of the stored row that the sweep uses is checked: an older version
    (or a hand in the database) may have stored what RuleSpec.parse refuses now. Raises RuleError naming
    the part and the reason."""
    if rule.template not in REMINDER_TEMPLATES:
        raise RuleError(
            "template", f"template {rule.template!r} is not one of {', '.join(REMINDER_TEMPLATES)}"
        )
    parse_audience(rule.audience)
    if _stored_segment(rule) is None:
        raise RuleError("segment", f"the stored segment {rule.segment!r} is not a table of criteria")
    try:
        return rule_window(rule, event, settings)
    except RuleError:
        raise
    except (ArithmeticError, ValueError) as exc:  # OverflowError: a moment datetime cannot count
        what = rule.offset or (rule.at.isoformat() if rule.at else "")
        raise RuleError("when", f"{what!r} cannot be placed on the calendar ({exc})") from exc


def _stored_segment(rule: ReminderRule) -> Segment | None:
    """The rule's segment, or None when the stored value is not one."""
    if not isinstance(rule.segment, dict):
        return None
    try:
        return Segment.from_dict(rule.segment)
    except (TypeError, ValueError):
        return None


def describe_rule(rule: ReminderRule, event: Event, settings: Settings, now: datetime) -> dict[str, Any]:
    """A rule as JSON, with when it sends and its state at `now`. A rule that cannot be used has the state
    "error", no times, and the reason in `error`; `error` also holds what the last sweep could not do."""
    zone = ZoneInfo(event.timezone)
    span: Window | None = None
    try:
        span = checked_window(rule, event, settings)
        problem = ""
    except RuleError as exc:
        problem = str(exc)
    if not rule.enabled:
        state_text = "disabled"
    elif event.status == EventStatus.CANCELLED:
        state_text = "cancelled"
    elif span is None:
        state_text = "error"
    else:
        state_text = span.state(now, SendingHours.parse(settings.reminder_hours), zone).value
    segment = rule.segment if _stored_segment(rule) is not None else {}
    return {
        "id": rule.id,
        "name": rule.name,
        "when": rule.offset or (_isoformat(rule.at, zone) if rule.at else ""),
        "audience": rule.audience.split(","),
        "template": rule.template,
        "segment": {k: v for k, v in segment.items() if v},
        "enabled": rule.enabled,
        "scheduled_at": _isoformat(span.scheduled_at, zone) if span else None,
        "send_from": _isoformat(span.send_from, zone) if span else None,
        "until": _isoformat(span.until, zone) if span else None,
        "state": state_text,
        "error": problem or rule.last_error,
        "error_at": _isoformat(rule.last_error_at, zone) if rule.last_error_at else None,
    }


def _isoformat(moment: datetime, zone: ZoneInfo) -> str:
    try:
        return moment.astimezone(zone).isoformat()
    except (ArithmeticError, ValueError):  # a stored moment at the edge of what datetime can count
        return moment.isoformat()


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


@dataclass(frozen=True)
class RuleFailure:
    """A rule the sweep could not use, and why."""

    rule_id: int
    rule: str
    event_id: int
    event: str
    error: str


@dataclass(frozen=True)
class Scan:
    """What a sweep at a moment finds: the reminders due, the rules it could not use, and the rules it
    could use that still carry an error of an earlier sweep."""

    due: list[Due]
    failed: list[RuleFailure]
    recovered: list[int]


def due_reminders(
    session: Session, now: datetime, settings: Settings, event_id: int | None = None
) -> list[Due]:
    """Every (rule, invitation) that is due at `now` and has no outbox row yet: what a sweep at `now` would
    send. Nothing for a cancelled or started event, a disabled rule, or while the quiet hours hold it; and
    nothing to pending registrations, or to suppressed or undeliverable addresses. A rule that cannot be
    used gives nothing (`scan_reminders` says which, and why)."""
    return scan_reminders(session, now, settings, event_id).due


def scan_reminders(session: Session, now: datetime, settings: Settings, event_id: int | None = None) -> Scan:
    """The reminders due at `now` (as `due_reminders`), each rule on its own: one that fails is logged and
    listed in `failed`, and the others are still read. Changes nothing."""
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
    failed: list[RuleFailure] = []
    recovered: list[int] = []
    for rule, event in found:
        rule_id, rule_name, event_key, slug = rule.id, rule.name, event.id, event.slug
        try:
            span = checked_window(rule, event, settings)
            if span.state(now, hours, ZoneInfo(event.timezone)) == State.DUE:
                due.extend(_due_of_rule(session, rule, event, span))
            if rule.last_error:
                recovered.append(rule_id)
        except DATABASE_DOWN:
            raise
        except Exception as exc:  # one bad rule must not keep every other rule's reminders back
            # A rule's own reason says it all; anything else is a bug worth its traceback.
            log.warning(
                "reminder rule %r of event %r cannot be used: %s",
                rule_name,
                slug,
                exc,
                exc_info=not isinstance(exc, RuleError),
            )
            failed.append(RuleFailure(rule_id, rule_name, event_key, slug, describe_error(exc)))
            # A statement that failed leaves a PostgreSQL transaction unusable; this one only read.
            session.rollback()
    return Scan(due, failed, recovered)


def describe_error(exc: Exception) -> str:
    """An error as the reminders page shows it: a rule's own reason as it is, anything else with its kind."""
    if isinstance(exc, RuleError):
        return f"{exc.field}: {exc}"
    return f"{type(exc).__name__}: {exc}"[:1000]


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
    failed: tuple[RuleFailure, ...] = ()


def sweep_reminders(
    factory: sessionmaker[Session], enqueue: Enqueue, now: datetime, settings: Settings
) -> SweepResult:
    """Write an outbox row for every reminder due at `now`, commit, and hand the new rows to the workers.

    A row whose key exists already is skipped by the database (ON CONFLICT DO NOTHING), so a sweep that
    runs twice, or two at once, writes each reminder once; only the rows this sweep wrote are enqueued.
    An event cancelled while the sweep ran gets none: its rows are rolled back.

    A rule that cannot be used, or an event whose rows cannot be written, is logged, and the error is kept
    on each rule concerned (`last_error`, shown on the reminders page) until a sweep can use it again or it
    is saved anew; every other rule and event still gets its reminders.
    """
    with factory() as session:
        scan = scan_reminders(session, now, settings)
        session.rollback()
    domain = sender_domain(settings.sender)
    created: list[int] = []
    failed = list(scan.failed)
    by_event: dict[int, list[Due]] = {}
    for each in scan.due:
        by_event.setdefault(each.event_id, []).append(each)
    for event_id, items in by_event.items():
        try:
            created.extend(_write_event(factory, event_id, items, domain, settings, now))
        except DATABASE_DOWN:
            raise
        except Exception as exc:  # this event's rows are rolled back; the other events still get theirs
            log.warning("reminders of event %r could not be written: %s", items[0].event, exc, exc_info=True)
            failed.extend(
                {
                    item.rule_id: RuleFailure(
                        item.rule_id, item.rule, event_id, item.event, describe_error(exc)
                    )
                    for item in items
                }.values()
            )
    for start in range(0, len(created), settings.batch_size):
        enqueue(created[start : start + settings.batch_size])
    # After the enqueue: the rows written are handed on even if keeping the errors fails.
    _keep_errors(factory, failed, [r for r in scan.recovered if r not in {f.rule_id for f in failed}], now)
    return SweepResult(len(scan.due), len(created), len(created), tuple(failed))


def _write_event(
    factory: sessionmaker[Session],
    event_id: int,
    items: list[Due],
    domain: str,
    settings: Settings,
    now: datetime,
) -> list[int]:
    """Write the event's due reminders and commit; the ids of the rows this wrote ([] if it was cancelled)."""
    with factory() as session:
        sequence = session.get_one(Event, event_id).sequence
        mine = _insert_new(session, [_row(item, sequence, domain, settings, now) for item in items])
        # Read after the insert, under the event's row lock on PostgreSQL: a cancellation committed
        # meanwhile is seen here, and one that comes later waits for this commit and cancels these rows.
        status = session.scalar(select(Event.status).where(Event.id == event_id).with_for_update())
        if status == EventStatus.CANCELLED:
            session.rollback()
            return []
        session.commit()
    return mine


def _keep_errors(
    factory: sessionmaker[Session], failed: list[RuleFailure], recovered: list[int], now: datetime
) -> None:
    """Keep each failed rule's error on the rule, and clear those of rules that worked again; commits."""
    if not failed and not recovered:
        return
    with factory() as session:
        for failure in failed:
            session.execute(
                update(ReminderRule)
                .where(ReminderRule.id == failure.rule_id)
                .values(last_error=failure.error, last_error_at=now)
            )
        if recovered:
            session.execute(
                update(ReminderRule)
                .where(ReminderRule.id.in_(recovered))
                .values(last_error="", last_error_at=None)
            )
        session.commit()


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
