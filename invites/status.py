"""Read model: how far a campaign got and who is coming."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from invites.models import Answer, Event, Invitation, MessageStatus, OutboundMessage


def event_status(session: Session, event: Event) -> dict[str, Any]:
    """The counts an organiser asks for first: invited, sent, failed, and the answers."""
    invited = session.scalar(select(func.count()).where(Invitation.event_id == event.id)) or 0
    answers = dict(
        session.execute(
            select(Invitation.answer, func.count())
            .where(Invitation.event_id == event.id)
            .group_by(Invitation.answer)
        ).all()
    )
    messages = dict(
        session.execute(
            select(OutboundMessage.status, func.count())
            .where(OutboundMessage.event_id == event.id, OutboundMessage.kind == "invitation")
            .group_by(OutboundMessage.status)
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
    }
