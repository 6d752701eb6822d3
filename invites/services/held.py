"""Use cases of held answers: what was not clearly a person's is kept here, counted nowhere, until decided.

A press of an RSVP or unsubscribe page that a link scanner may have made (invites.domain.evidence), and a
calendar reply whose sender was not authenticated (invites.services.replies), are held: kept with their
evidence and the reason, shown on the event's overview under "te controleren". They send no mail and move
nobody on the waiting list, because the invitation itself is not touched. The person's next answer replaces a
held one; the organiser may accept it (then it is recorded as the person's answer: invites.services.review) or
reject it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from invites.db.models import HeldAnswer, Invitation, OutboundMessage, Recipient
from invites.domain.states import Answer, AnswerSource, HeldKind, HeldState


@dataclass(frozen=True)
class Held:
    """One press or reply to hold, as the door that received it saw it."""

    invitation_id: int
    event_id: int
    source: AnswerSource
    reason: str
    evidence: dict[str, Any]
    answer: Answer | None = None
    guests: int = 0
    responses: dict[str, str] | None = None
    kind: HeldKind = HeldKind.ANSWER


def delivered_at(session: Session, people: Iterable[tuple[int, int, int]]) -> dict[int, datetime]:
    """When each invitation's person was last sent a message about its event (the relay's 250), by
    invitation id; absent when nothing was. `people` are (invitation id, event id, recipient id): the outbox
    is searched by its indexed recipient, not by invitation."""
    wanted = {(event_id, recipient_id): invitation_id for invitation_id, event_id, recipient_id in people}
    if not wanted:
        return {}
    rows = session.execute(
        select(OutboundMessage.event_id, OutboundMessage.recipient_id, func.max(OutboundMessage.sent_at))
        .where(
            OutboundMessage.recipient_id.in_({recipient for _, recipient in wanted}),
            OutboundMessage.event_id.in_({event for event, _ in wanted}),
            OutboundMessage.sent_at.is_not(None),
        )
        .group_by(OutboundMessage.event_id, OutboundMessage.recipient_id)
    )
    return {
        wanted[(event_id, recipient_id)]: at
        for event_id, recipient_id, at in rows
        if (event_id, recipient_id) in wanted and at is not None
    }


def hold(session: Session, items: Iterable[Held], now: datetime) -> list[int]:
    """Keep each press or reply as held, in place of an earlier held one of the same person and kind (a
    scanner presses every button: the organiser sees its last press). Returns the ids; the caller commits."""
    rows = [
        HeldAnswer(
            invitation_id=item.invitation_id,
            event_id=item.event_id,
            kind=item.kind,
            answer=item.answer,
            guests=item.guests,
            responses=item.responses or {},
            source=item.source,
            at=now,
            reason=item.reason,
            evidence=item.evidence,
            state=HeldState.HELD,
            decided_by="",
        )
        for item in items
    ]
    if not rows:
        return []
    for kind in {row.kind for row in rows}:
        _replace(session, [row.invitation_id for row in rows if row.kind == kind], kind, now)
    session.add_all(rows)
    session.flush()
    return [row.id for row in rows]


def replace_held(
    session: Session, invitation_ids: Iterable[int], now: datetime, kind: HeldKind = HeldKind.ANSWER
) -> None:
    """A person's answer (or unsubscribe) was carried out: the held ones of these invitations are replaced."""
    _replace(session, invitation_ids, kind, now)


def _replace(session: Session, invitation_ids: Iterable[int], kind: HeldKind, now: datetime) -> None:
    ids = set(invitation_ids)
    if ids:
        session.execute(
            update(HeldAnswer)
            .where(
                HeldAnswer.invitation_id.in_(ids),
                HeldAnswer.state == HeldState.HELD,
                HeldAnswer.kind == kind,
            )
            .values(state=HeldState.REPLACED, decided_at=now),
            execution_options={"synchronize_session": False},
        )


@dataclass(frozen=True)
class HeldRow:
    id: int
    kind: HeldKind
    answer: Answer | None
    source: AnswerSource
    at: datetime
    reason: str
    evidence: dict[str, Any]
    name: str
    email: str


@dataclass(frozen=True)
class HeldList:
    rows: list[HeldRow]
    total: int


def open_held(session: Session, event_id: int, limit: int = 100) -> HeldList:
    """The event's held answers waiting for a decision, newest first (at most `limit`), and how many."""
    where = (HeldAnswer.event_id == event_id, HeldAnswer.state == HeldState.HELD)
    total = session.scalar(select(func.count(HeldAnswer.id)).where(*where)) or 0
    rows = session.execute(
        select(
            HeldAnswer.id,
            HeldAnswer.kind,
            HeldAnswer.answer,
            HeldAnswer.source,
            HeldAnswer.at,
            HeldAnswer.reason,
            HeldAnswer.evidence,
            Recipient.display_name,
            Recipient.email,
        )
        .join(Invitation, Invitation.id == HeldAnswer.invitation_id)
        .join(Recipient, Recipient.id == Invitation.recipient_id)
        .where(*where)
        .order_by(HeldAnswer.at.desc(), HeldAnswer.id.desc())
        .limit(limit)
    )
    return HeldList([HeldRow(*row) for row in rows], int(total))
