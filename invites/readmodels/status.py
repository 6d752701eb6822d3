"""Read model: how far a campaign got and who is coming."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from invites.db.models import (
    AnswerHistory,
    Event,
    HeldAnswer,
    Invitation,
    OutboundMessage,
    PageView,
    Recipient,
)
from invites.db.segments import segment_conditions
from invites.domain.reference import Municipalities, load_municipalities
from invites.domain.segment import Segment
from invites.domain.states import Answer, HeldState, MessageStatus
from invites.services.rsvp import places_taken


def event_status(session: Session, event: Event) -> dict[str, Any]:
    """The counts an organiser asks for first: invited, sent, failed, and the answers."""
    confirmed = (Invitation.event_id == event.id, Invitation.pending.is_(False))
    invited = session.scalar(select(func.count()).where(*confirmed)) or 0
    pending = (
        session.scalar(select(func.count()).where(Invitation.event_id == event.id, Invitation.pending)) or 0
    )
    answers = dict(
        session.execute(
            select(Invitation.answer, func.count()).where(*confirmed).group_by(Invitation.answer)
        ).all()
    )
    messages = dict(
        session.execute(
            select(OutboundMessage.status, func.count())
            .where(OutboundMessage.event_id == event.id, OutboundMessage.kind == "invitation")
            .group_by(OutboundMessage.status)
        ).all()
    )
    waitlisted = session.scalar(
        select(func.count()).where(Invitation.event_id == event.id, Invitation.waitlist_position.is_not(None))
    )
    held = session.scalar(
        select(func.count(HeldAnswer.id)).where(
            HeldAnswer.event_id == event.id, HeldAnswer.state == HeldState.HELD
        )
    )
    opens = dict(
        session.execute(
            select(PageView.likely_scanner, func.count(func.distinct(PageView.invitation_id)))
            .join(Invitation, Invitation.id == PageView.invitation_id)
            .where(Invitation.event_id == event.id)
            .group_by(PageView.likely_scanner)
        ).all()
    )
    return {
        "event": event.slug,
        "title": event.title,
        "status": event.status.value,
        "sequence": event.sequence,
        "invited": invited,
        "queued": sum(int(messages.get(s, 0)) for s in (MessageStatus.QUEUED, MessageStatus.SENDING)),
        "sent": int(messages.get(MessageStatus.SENT, 0)),
        "deferred": int(messages.get(MessageStatus.DEFERRED, 0)),
        "failed": int(messages.get(MessageStatus.FAILED, 0)) + int(messages.get(MessageStatus.BOUNCED, 0)),
        "accepted": int(answers.get(Answer.ACCEPTED, 0)),
        "declined": int(answers.get(Answer.DECLINED, 0)),
        "tentative": int(answers.get(Answer.TENTATIVE, 0)),
        "no_answer": int(answers.get(None, 0)),
        "waitlisted": int(waitlisted or 0),
        "pending_registrations": int(pending),
        "places_taken": places_taken(session, event.id),
        "capacity": event.capacity,
        "opened": int(opens.get(False, 0)),
        "opened_by_scanners": int(opens.get(True, 0)),
        # Answers not clearly a person's, in none of the counts above, waiting for the organiser's review.
        "held": int(held or 0),
    }


def timeline(session: Session, event: Event) -> list[dict[str, Any]]:
    """The answers as they stood at the end of each day that anything changed, from the history."""
    current: dict[int, Answer] = {}
    days: dict[str, dict[str, int]] = {}
    zone = ZoneInfo(event.timezone)
    rows = session.execute(
        select(AnswerHistory.invitation_id, AnswerHistory.answer, AnswerHistory.at)
        .join(Invitation, Invitation.id == AnswerHistory.invitation_id)
        .where(Invitation.event_id == event.id)
        .order_by(AnswerHistory.at, AnswerHistory.id)
    )
    for invitation_id, answer, at in rows:
        current[invitation_id] = answer
        tally = {a.value: 0 for a in Answer}
        for value in current.values():
            tally[value.value] += 1
        days[at.astimezone(zone).date().isoformat()] = tally
    return [{"day": day, **tally} for day, tally in days.items()]


def attendees(
    session: Session,
    event: Event,
    answer: Answer | None = None,
    segment: Segment | None = None,
    places: Municipalities | None = None,
) -> list[dict[str, Any]]:
    """The invited, filtered by answer and segment, sorted as a check-in list is: by surname; the places
    named from `places` (the Runtime's list; the bundled one when None)."""
    places = places or load_municipalities()
    query = (
        select(Recipient, Invitation)
        .join(Invitation, Invitation.recipient_id == Recipient.id)
        .where(Invitation.event_id == event.id, *segment_conditions(segment or Segment(), event))
    )
    if answer is not None:
        query = query.where(Invitation.answer == answer)
    rows = sorted(
        session.execute(query).all(),
        key=lambda row: (row[0].last_name or row[0].display_name or row[0].email).casefold(),
    )
    return [
        {
            "name": recipient.display_name or recipient.email,
            "email": recipient.email,
            "role": recipient.role_key or recipient.role_label,
            "municipality": places.name(recipient.municipality_code),
            "organisation": recipient.organisation,
            "answer": invitation.answer.value if invitation.answer else None,
            "guests": invitation.guests,
            "waitlist_position": invitation.waitlist_position,
            "responses": invitation.responses,
            "answered_at": invitation.answered_at.isoformat() if invitation.answered_at else None,
        }
        for recipient, invitation in rows
    ]
