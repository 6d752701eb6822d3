"""Use cases of the RSVP page: find an invitation by its token, log an open, record an answer.

The count must be the truth: a GET is only ever an open (flagged when it looks like a link scanner), a
press that was not clearly a person's is held instead of recorded (invites.domain.evidence,
invites.services.held), every answer is kept in an append-only history with how it came, and the capacity is
never overbooked: the event row is locked while places are counted, so concurrent accepts queue up instead of
each seeing the last free place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, joinedload

from invites.db.models import AnswerHistory, Event, Invitation, PageView, Recipient
from invites.domain.errors import InputError, NotFound
from invites.domain.evidence import likely_scanner
from invites.domain.states import Answer, AnswerSource, EventStatus
from invites.domain.tokens import split_token, token_matches
from invites.services.held import delivered_at, replace_held
from invites.services.outbox import queue_personal
from invites.settings import Settings

STANDARD_QUESTIONS = ("dietary", "accessibility", "remark")
MAX_TEXT = 1000


class AnswerState(Protocol):
    """What an answer reads and sets of an invitation: the Invitation itself, or a batch's lighter copy."""

    id: int
    answer: Answer | None
    answered_at: datetime | None
    guests: int
    responses: dict[str, Any]
    waitlist_position: int | None
    pending: bool


@dataclass(frozen=True)
class RsvpView:
    invitation: Invitation
    recipient: Recipient
    event: Event


@dataclass
class AnswerOutcome:
    changed: bool
    history_id: int
    waitlist_position: int | None = None
    promoted: list[int] = field(default_factory=list)
    was_attending: bool = False
    source: AnswerSource = AnswerSource.WEB


def find_by_token(session: Session, secret: str, token: str) -> RsvpView:
    """The invitation a token opens. A forged, wrong or revoked token is NotFound, and says no more."""
    public_id = split_token(token)
    invitation = (
        session.scalar(
            select(Invitation)
            .where(Invitation.public_id == public_id)
            .options(joinedload(Invitation.recipient), joinedload(Invitation.event))
        )
        if public_id
        else None
    )
    if invitation is None or not token_matches(secret, token, invitation.public_id, invitation.token_version):
        raise NotFound("no such invitation")
    return RsvpView(invitation, invitation.recipient, invitation.event)


def revoke(session: Session, invitation: Invitation) -> None:
    """Make every link sent so far for this invitation a dead end; the next message carries a new one."""
    invitation.token_version += 1
    session.flush()


def log_open(session: Session, invitation: Invitation, user_agent: str, now: datetime) -> PageView:
    """Record that the RSVP page was fetched, flagged when it looks like a link scanner. The caller commits.

    This is the only thing a GET ever writes: an open, never an answer.
    """
    delivered = delivered_at(session, [(invitation.id, invitation.event_id, invitation.recipient_id)])
    view = PageView(
        invitation_id=invitation.id,
        at=now,
        user_agent=user_agent[:500],
        likely_scanner=likely_scanner(user_agent, delivered.get(invitation.id), now),
    )
    session.add(view)
    session.flush()
    return view


def parse_answer(value: str) -> Answer:
    try:
        return Answer(value)
    except ValueError:
        raise InputError(f"answer {value!r} is not one of accepted, declined, tentative") from None


def rsvp_options(event: Event) -> dict[str, Any]:
    options = dict(event.extra.get("rsvp") or {})
    options.setdefault("max_guests", 0)
    options.setdefault("questions", [])
    return options


def check_responses(
    event: Event,
    guests: int,
    responses: dict[str, str],
    answer: Answer = Answer.ACCEPTED,
    enforce_required: bool = True,
) -> tuple[int, dict[str, str]]:
    """The guests and answers to the event's questions, checked; unknown questions are dropped.

    A required question must be answered by those who come (or may come), not by those who decline.
    """
    options = rsvp_options(event)
    if not 0 <= guests <= options["max_guests"]:
        raise InputError(f"the number of guests must be between 0 and {options['max_guests']}")
    clean: dict[str, str] = {}
    for key in STANDARD_QUESTIONS:
        if options.get(key) and responses.get(key, "").strip():
            clean[key] = responses[key].strip()[:MAX_TEXT]
    for question in options["questions"]:
        value = responses.get(question["key"], "").strip()[:MAX_TEXT]
        if not value:
            if question["required"] and answer != Answer.DECLINED and enforce_required:
                raise InputError(f"please answer: {question['label']}")
            continue
        if question["type"] == "choice" and value not in question["choices"]:
            raise InputError(f"{question['label']}: choose one of {', '.join(question['choices'])}")
        if question["type"] == "yesno" and value not in ("yes", "no"):
            raise InputError(f"{question['label']}: answer yes or no")
        if question["type"] == "number" and not value.isdigit():
            raise InputError(f"{question['label']}: give a whole number")
        clean[question["key"]] = value
    return guests, clean


def places_taken(session: Session, event_id: int, excluding: int | None = None) -> int:
    """Confirmed places: everyone who accepted and is not on the waiting list, guests included."""
    query = select(func.coalesce(func.sum(1 + Invitation.guests), 0)).where(
        Invitation.event_id == event_id,
        Invitation.answer == Answer.ACCEPTED,
        Invitation.waitlist_position.is_(None),
    )
    if excluding is not None:
        query = query.where(Invitation.id != excluding)
    return int(session.scalar(query) or 0)


def lock_event(session: Session, event_id: int) -> Event:
    """Hold the event's lock for the rest of the transaction, so capacity decisions queue up one by one.

    PostgreSQL locks the row (FOR UPDATE). SQLite has one writer at a time: a write as the transaction's first
    statement takes that lock before anything is counted (the driver runs reads outside a transaction, so
    no stale snapshot can be upgraded).
    """
    statement = select(Event).where(Event.id == event_id).execution_options(populate_existing=True)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    else:
        session.execute(update(Event).where(Event.id == event_id).values(sequence=Event.sequence))
    event = session.scalar(statement)
    if event is None:
        raise NotFound(f"no event {event_id}")
    return event


def check_answer(
    event: Event,
    invitation: AnswerState,
    answer: Answer,
    source: AnswerSource,
    now: datetime,
    guests: int | None = None,
    responses: dict[str, str] | None = None,
) -> tuple[int, dict[str, str]]:
    """The rules every answer meets before anything changes; returns the guests and the checked responses.

    Raises InputError when the event is cancelled, the deadline has passed, or the responses do not fit.
    """
    if event.status == EventStatus.CANCELLED:
        raise InputError("this event has been cancelled")
    if event.rsvp_deadline and now > event.rsvp_deadline and source != AnswerSource.ORGANISER:
        raise InputError("the deadline for answers has passed")
    return check_responses(
        event,
        invitation.guests if guests is None else guests,
        invitation.responses if responses is None else responses,
        answer,
        # An Accept pressed in a calendar, or an organiser's entry, cannot answer the page's questions.
        enforce_required=source in (AnswerSource.WEB, AnswerSource.REGISTRATION),
    )


def opted_in(invitation: AnswerState, source: AnswerSource) -> AnswerSource:
    """An answer ends a registrant's double opt-in; from the personal link we mailed, it counts as one.

    A calendar reply never does: only the emailed link proves the registrant reads that mailbox.
    """
    if not invitation.pending or source == AnswerSource.CALENDAR:
        return source
    invitation.pending = False
    return AnswerSource.REGISTRATION if source == AnswerSource.WEB else source


def apply_answer(
    invitation: AnswerState,
    answer: Answer,
    source: AnswerSource,
    now: datetime,
    user_agent: str,
    guests: int,
    responses: dict[str, str],
    evidence: dict[str, Any] | None = None,
) -> tuple[bool, bool, dict[str, Any]]:
    """Set a checked answer on the invitation; returns (changed, was_attending, its history row's values).

    The waiting list is the caller's, decided under the event's lock before the history row is written; the
    row's detail says where the answer ended up, and how it came (`evidence`, invites.domain.evidence).
    """
    was_attending = invitation.answer == Answer.ACCEPTED and invitation.waitlist_position is None
    changed = (invitation.answer, invitation.guests, invitation.responses) != (answer, guests, responses)
    invitation.answer, invitation.guests, invitation.responses = answer, guests, responses
    invitation.answered_at = now
    if answer != Answer.ACCEPTED:
        invitation.waitlist_position = None
    history = {
        "invitation_id": invitation.id,
        "answer": answer,
        "at": now,
        "source": source,
        "user_agent": user_agent[:500],
        "detail": {
            "guests": guests,
            "responses": responses,
            "waitlist": invitation.waitlist_position,
            "evidence": evidence or {},
        },
    }
    return changed, was_attending, history


def record_answer(
    session: Session,
    invitation: Invitation,
    answer: Answer,
    source: AnswerSource,
    now: datetime,
    user_agent: str = "",
    guests: int | None = None,
    responses: dict[str, str] | None = None,
    evidence: dict[str, Any] | None = None,
) -> AnswerOutcome:
    """Set the invitation's answer, append it to the history with how it came, and keep the capacity honest.

    An accept beyond the capacity goes onto the waiting list. A confirmed guest who declines (or brings fewer
    guests) frees places, and the first on the waiting list move up. A held answer of the same person is
    replaced by this one. Only a person's answer comes here (invites.domain.evidence, invites.services.held).
    The caller commits.
    """
    event = session.get_one(Event, invitation.event_id)
    if event.capacity is not None:
        # Places are counted below: hold the event's lock, so concurrent accepts decide one at a time,
        # and read the invitation again under it (a promotion may have moved it while we waited).
        event = lock_event(session, invitation.event_id)
        session.refresh(invitation)
    guests, clean = check_answer(event, invitation, answer, source, now, guests, responses)
    source = opted_in(invitation, source)
    changed, was_attending, values = apply_answer(
        invitation, answer, source, now, user_agent, guests, clean, evidence
    )
    if answer == Answer.ACCEPTED and invitation.waitlist_position is None and event.capacity is not None:
        free = event.capacity - places_taken(session, event.id, invitation.id)
        if 1 + guests > free:
            if was_attending:
                raise InputError(f"only {free} places are left, so you can bring at most {free - 1} guests")
            invitation.waitlist_position = _next_position(session, event.id)
    history = AnswerHistory(**values)
    history.detail = {**values["detail"], "waitlist": invitation.waitlist_position}
    session.add(history)
    replace_held(session, [invitation.id], now)
    session.flush()
    promoted: list[int] = []
    if event.capacity is not None:
        promoted = promote_waitlist(session, event, now)
        _renumber_waitlist(session, event.id)
    return AnswerOutcome(changed, history.id, invitation.waitlist_position, promoted, was_attending, source)


def _next_position(session: Session, event_id: int) -> int:
    highest = session.scalar(
        select(func.max(Invitation.waitlist_position)).where(Invitation.event_id == event_id)
    )
    return int(highest or 0) + 1


def promote_waitlist(session: Session, event: Event, now: datetime) -> list[int]:
    """Move people up from the waiting list, in order, while their party fits; returns their invitations."""
    if event.capacity is None:
        return []
    promoted: list[int] = []
    free = event.capacity - places_taken(session, event.id)
    waiting = session.scalars(
        select(Invitation)
        .where(Invitation.event_id == event.id, Invitation.waitlist_position.is_not(None))
        .order_by(Invitation.waitlist_position)
    ).all()
    for invitation in waiting:
        need = 1 + invitation.guests
        if need > free:
            break  # first come, first served: nobody skips the queue
        invitation.waitlist_position = None
        free -= need
        session.add(
            AnswerHistory(
                invitation_id=invitation.id,
                answer=Answer.ACCEPTED,
                at=now,
                source=AnswerSource.WAITLIST,
                detail={"promoted": True, "guests": invitation.guests},
            )
        )
        promoted.append(invitation.id)
    session.flush()
    return promoted


def _renumber_waitlist(session: Session, event_id: int) -> None:
    waiting = session.scalars(
        select(Invitation)
        .where(Invitation.event_id == event_id, Invitation.waitlist_position.is_not(None))
        .order_by(Invitation.waitlist_position)
    ).all()
    for position, invitation in enumerate(waiting, start=1):
        invitation.waitlist_position = position
    session.flush()


def queue_notices(
    session: Session, invitation: Invitation, outcome: AnswerOutcome, settings: Settings, now: datetime
) -> list[int]:
    """Queue the mail an answer calls for; returns outbox ids to enqueue after the commit.

    The one who answered gets a confirmation with the calendar updated (REQUEST when coming, CANCEL when
    not), or the waiting-list notice; an Accept pressed in a calendar needs no confirmation, only the notice
    when it landed on the waiting list. Everyone who moved up from the waiting list is told.
    """
    cause = f"h{outcome.history_id}"
    queued: list[int | None] = []
    kind = notice_kind(outcome)
    if kind:
        queued.append(queue_personal(session, kind, invitation, cause, settings, now))
    for promoted in outcome.promoted:
        moved_up = session.get_one(Invitation, promoted)
        queued.append(queue_personal(session, "rsvp-confirmation", moved_up, f"up-{cause}", settings, now))
    return [row for row in queued if row is not None]


def notice_kind(outcome: AnswerOutcome) -> str | None:
    """The message the one who answered gets, if any."""
    if not outcome.changed:
        return None
    if outcome.waitlist_position is not None:
        return "waitlist"
    return "rsvp-confirmation" if outcome.source != AnswerSource.CALENDAR else None
