"""The JSON API for answers: the invitations of an event with their answers, one person's answer history,
and an answer an organiser records for someone (who phoned, or said so at the door)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from invites.db.models import Event, Invitation, Recipient
from invites.domain.errors import InputError, NotFound
from invites.services import answers, rsvp
from invites.services.events import find_invitee, get_event
from invites.web.api_models import (
    HistoryEntry,
    Rsvp,
    RsvpBody,
    RsvpHistory,
    RsvpPage,
    RsvpRecorded,
    Slug,
    bearer,
    local,
    problems,
)
from invites.web.auth import organiser_router
from invites.web.deps import RuntimeDep, SessionDep

router = organiser_router(prefix="/api/v1", tags=["rsvps"], dependencies=[Depends(bearer)])

Address = Annotated[str, Path(max_length=320, description="the invitee's e-mail address, in any case")]


class AnswerFilter(enum.StrEnum):
    ACCEPTED = "accepted"
    DECLINED = "declined"
    TENTATIVE = "tentative"
    NONE = "none"


def _invitee(session: Session, event: Event, address: str) -> tuple[Recipient, Invitation]:
    try:
        return find_invitee(session, event, address)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc


def _rsvp(recipient: Recipient, invitation: Invitation, event: Event) -> Rsvp:
    return Rsvp(
        email=recipient.email,
        name=recipient.display_name or recipient.email,
        answer=invitation.answer.value if invitation.answer else None,
        guests=invitation.guests,
        responses=invitation.responses,
        waitlist_position=invitation.waitlist_position,
        answered_at=local(invitation.answered_at, event),
        pending=invitation.pending,
    )


@router.get("/events/{slug}/rsvps", responses=problems(404))
def list_rsvps(
    slug: Slug,
    session: SessionDep,
    answer: Annotated[
        AnswerFilter | None, Query(description="only this answer; `none`: not answered")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> RsvpPage:
    """The invitations with their answers, by surname, a page at a time."""
    event = get_event(session, slug)
    where = [Invitation.event_id == event.id]
    if answer == AnswerFilter.NONE:
        where.append(Invitation.answer.is_(None))
    elif answer is not None:
        where.append(Invitation.answer == rsvp.parse_answer(answer.value))
    total = session.scalar(select(func.count()).select_from(Invitation).where(*where)) or 0
    rows = session.execute(
        select(Recipient, Invitation)
        .join(Invitation, Invitation.recipient_id == Recipient.id)
        .where(*where)
        .order_by(Recipient.last_name, Recipient.email_key)
        .limit(limit)
        .offset(offset)
    ).all()
    return RsvpPage(
        event=event.slug,
        total=total,
        limit=limit,
        offset=offset,
        items=[_rsvp(recipient, invitation, event) for recipient, invitation in rows],
    )


@router.get("/events/{slug}/rsvps/{email}/history", responses=problems(404))
def rsvp_history(slug: Slug, email: Address, session: SessionDep) -> RsvpHistory:
    """Every answer recorded for this person, oldest first, and from which door it came."""
    event = get_event(session, slug)
    recipient, invitation = _invitee(session, event, email)
    return RsvpHistory(
        event=event.slug,
        email=recipient.email,
        answer=invitation.answer.value if invitation.answer else None,
        history=[
            HistoryEntry(
                answer=entry.answer.value,
                at=local(entry.at, event) or entry.at,
                source=entry.source.value,
                user_agent=entry.user_agent,
                detail=entry.detail,
            )
            for entry in invitation.history
        ],
    )


@router.put("/events/{slug}/rsvps/{email}", responses=problems(400, 404))
def set_rsvp(
    slug: Slug, email: Address, body: RsvpBody, request: Request, session: SessionDep, runtime: RuntimeDep
) -> RsvpRecorded:
    """Record an answer for someone, as the organiser: the capacity and waiting list apply, the deadline
    does not. They are sent the confirmation (or the waiting-list notice) as if they had answered."""
    # The use case answers 404 (NotFound) for an unknown event or person, in a transaction of its own; the
    # request's session reads only afterwards, what it stored.
    try:
        recorded = answers.record_for_organiser(
            runtime.sessions,
            runtime.settings,
            slug,
            email,
            body.answer,
            datetime.now(UTC),
            runtime.enqueue,
            guests=body.guests,
            responses=body.responses,
            user_agent=request.headers.get("user-agent", ""),
            recorded_by=getattr(getattr(request.state, "organiser", None), "email", ""),
            client=request.client.host if request.client else "",
        )
    except InputError as exc:
        raise HTTPException(400, str(exc)) from exc
    event = get_event(session, slug)
    recipient, invitation = _invitee(session, event, email)
    return RsvpRecorded(
        **_rsvp(recipient, invitation, event).model_dump(), changed=recorded.changed, notices=recorded.notices
    )
