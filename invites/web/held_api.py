"""The JSON API for held answers: what was not clearly a person's (a link scanner's press, an unauthenticated
calendar reply), and the organiser's decision on each. The overview's "te controleren" shows the same."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel

from invites.domain.errors import InputError, NotFound
from invites.services import held, review
from invites.services.events import get_event
from invites.web.api_models import Slug, bearer, local, problems
from invites.web.auth import organiser_router
from invites.web.deps import RuntimeDep, SessionDep

router = organiser_router(prefix="/api/v1", tags=["rsvps"], dependencies=[Depends(bearer)])


class HeldEntry(BaseModel):
    id: int
    kind: str
    answer: str | None
    source: str
    email: str
    name: str
    at: datetime | None
    reason: str
    evidence: dict[str, Any]


class HeldPage(BaseModel):
    total: int
    items: list[HeldEntry]


class Decision(enum.StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"


class DecisionBody(BaseModel):
    decision: Decision


class Decided(BaseModel):
    id: int
    decision: Decision
    queued: int


@router.get("/events/{slug}/held", responses=problems(404))
def list_held(slug: Slug, session: SessionDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> HeldPage:
    """The event's held answers waiting for a decision, newest first. None of them is in any count."""
    try:
        event = get_event(session, slug)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    found = held.open_held(session, event.id, limit)
    return HeldPage(
        total=found.total,
        items=[
            HeldEntry(
                id=row.id,
                kind=row.kind.value,
                answer=row.answer.value if row.answer else None,
                source=row.source.value,
                email=row.email,
                name=row.name or row.email,
                at=local(row.at, event),
                reason=row.reason,
                evidence=row.evidence,
            )
            for row in found.rows
        ],
    )


@router.post("/events/{slug}/held/{held_id}", responses=problems(404, 409))
def decide_held(
    request: Request,
    slug: Slug,
    held_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    body: DecisionBody,
    session: SessionDep,
    rt: RuntimeDep,
) -> Decided:
    """Accept a held answer as the person's (it is recorded, with its confirmation) or reject it."""
    try:
        event_id = get_event(session, slug).id
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    session.close()
    organiser = getattr(request.state, "organiser", None)
    try:
        queued = review.decide(
            rt.sessions,
            rt.settings,
            event_id,
            held_id,
            body.decision == Decision.ACCEPT,
            getattr(organiser, "email", ""),
            datetime.now(UTC),
        )
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except InputError as exc:
        raise HTTPException(409, str(exc)) from exc
    if queued:
        rt.enqueue(queued)
    return Decided(id=held_id, decision=body.decision, queued=len(queued))
