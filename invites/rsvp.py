"""Use cases of the RSVP page: find an invitation by its token, show it, record an answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from invites.errors import InputError, NotFound
from invites.models import Answer, AnswerHistory, AnswerSource, Event, EventStatus, Invitation, Recipient
from invites.tokens import split_token, token_matches


@dataclass(frozen=True)
class RsvpView:
    invitation: Invitation
    recipient: Recipient
    event: Event


def find_by_token(session: Session, secret: str, token: str) -> RsvpView:
    """The invitation a token opens. A forged, wrong or revoked token is NotFound, and says no more."""
    public_id = split_token(token)
    invitation = (
        session.scalar(select(Invitation).where(Invitation.public_id == public_id)) if public_id else None
    )
    if invitation is None or not token_matches(secret, token, invitation.public_id, invitation.token_version):
        raise NotFound("no such invitation")
    return RsvpView(invitation, invitation.recipient, invitation.event)


def parse_answer(value: str) -> Answer:
    try:
        return Answer(value)
    except ValueError:
        raise InputError(f"answer {value!r} is not one of accepted, declined, tentative") from None


def record_answer(
    session: Session,
    invitation: Invitation,
    answer: Answer,
    source: AnswerSource,
    now: datetime,
    user_agent: str = "",
) -> bool:
    """Set the invitation's answer and append it to the history. Returns whether the answer changed.

    The caller commits. A cancelled event, or one past its RSVP deadline, takes no more answers.
    """
    event = invitation.event
    if event.status == EventStatus.CANCELLED:
        raise InputError("this event has been cancelled")
    if event.rsvp_deadline and now > event.rsvp_deadline:
        raise InputError("the deadline for answers has passed")
    changed = invitation.answer != answer
    invitation.answer = answer
    invitation.answered_at = now
    session.add(
        AnswerHistory(
            invitation_id=invitation.id, answer=answer, at=now, source=source, user_agent=user_agent[:500]
        )
    )
    session.flush()
    return changed
