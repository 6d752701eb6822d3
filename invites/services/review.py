"""Use case: the organiser's review of held answers ("te controleren" on the event's overview).

What was held (invites.services.held) is counted nowhere until the organiser accepts it as a person's, which
records it like any answer, or rejects it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from invites.db.models import HeldAnswer, Invitation
from invites.domain.errors import InputError, NotFound
from invites.domain.states import AnswerSource, HeldKind, HeldState
from invites.services import rsvp
from invites.services.suppression import suppress
from invites.settings import Settings


def decide(
    factory: sessionmaker[Session],
    settings: Settings,
    event_id: int,
    held_id: int,
    accept: bool,
    by: str,
    now: datetime,
) -> list[int]:
    """The organiser's decision on a held answer. Accepted, it is recorded as the person's answer (with its
    confirmation, the waiting list moving as for any answer) or the unsubscribe is carried out; rejected, it
    is kept as rejected and nothing else changes. Commits; returns the outbox rows to enqueue.

    Raises NotFound for a held answer of another event, InputError when it was already decided or replaced,
    or when recording it breaks a rule (the event was cancelled, say).
    """
    with factory() as session:
        row = session.get(HeldAnswer, held_id, with_for_update=True)
        if row is None or row.event_id != event_id:
            raise NotFound(f"no held answer {held_id} for this event")
        if row.state != HeldState.HELD:
            raise InputError("over dit antwoord is al beslist, of de genodigde heeft opnieuw geantwoord")
        row.state = HeldState.ACCEPTED if accept else HeldState.REJECTED
        row.decided_at, row.decided_by = now, by[:320]
        queued: list[int] = []
        if accept:
            invitation = session.get_one(Invitation, row.invitation_id)
            if row.kind == HeldKind.UNSUBSCRIBE:
                suppress(session, invitation.recipient.email, "unsubscribed", now)
            elif row.answer is not None:
                outcome = rsvp.record_answer(
                    session,
                    invitation,
                    row.answer,
                    row.source,
                    now,
                    user_agent=str(row.evidence.get("user_agent", "")),
                    guests=row.guests if row.source != AnswerSource.CALENDAR else None,
                    responses=dict(row.responses) if row.source != AnswerSource.CALENDAR else None,
                    evidence={**row.evidence, "accepted_by": by, "held_id": row.id},
                )
                queued = rsvp.queue_notices(session, invitation, outcome, settings, now)
        session.commit()
    return queued
