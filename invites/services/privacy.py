"""Use cases of the AVG/GDPR: export everything stored about a person, erase a person, and purge the personal
data of recipients whose events are long over. Exports and erasures are written to the audit log.

Erasure keeps what the law allows: the invitation rows with their answers and guests stay, so every count
(invited, sent, accepted) stays right, but nothing in them leads back to the person. The recipient row
becomes an empty shell (`erased-<id>`, undeliverable), user agents and free-text answers are cleared, outbox
rows lose their address and server reply, and the address is suppressed by its keyed hash.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, and_, cast, delete, func, literal, or_, select, update
from sqlalchemy.inspection import inspect
from sqlalchemy.orm import Session

from invites.db.models import (
    AnswerHistory,
    AuditLog,
    Event,
    ImportJob,
    Invitation,
    OutboundMessage,
    PageView,
    Recipient,
    Suppression,
)
from invites.domain.states import MessageStatus
from invites.services.suppression import erased_key

ERASED_PREFIX = "erased-"
ERASED_TEXT = "[erased]"
CHUNK = 500
UNSENT = [s for s in MessageStatus if not s.final]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _columns(row: Any, leave_out: Sequence[str] = ()) -> dict[str, Any]:
    return {
        attr.key: _plain(getattr(row, attr.key))
        for attr in inspect(type(row)).column_attrs
        if attr.key not in leave_out
    }


def _find(session: Session, address: str) -> Recipient | None:
    return session.scalar(select(Recipient).where(Recipient.email_key == address.strip().casefold()))


def _audit(session: Session, action: str, actor: str, subject: str, now: datetime, **detail: Any) -> None:
    session.add(AuditLog(at=now, action=action, actor=actor, subject_key=subject, detail=detail))


def export_person(session: Session, address: str, now: datetime, actor: str) -> dict[str, Any]:
    """Everything stored about the person at `address`, as JSON-ready data; writes an `export` entry to the
    audit log (naming the person by the keyed hash of the address). The caller commits."""
    key = address.strip().casefold()
    hashed = erased_key(session, key)
    recipient = _find(session, key)
    invitations: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    if recipient is not None:
        for invitation in session.scalars(
            select(Invitation).where(Invitation.recipient_id == recipient.id).order_by(Invitation.id)
        ):
            event = session.get_one(Event, invitation.event_id)
            views = session.scalars(
                select(PageView).where(PageView.invitation_id == invitation.id).order_by(PageView.id)
            )
            invitations.append(
                {
                    "event": {"slug": event.slug, "title": event.title, "starts_at": _plain(event.starts_at)},
                    **_columns(invitation, ("event_id", "recipient_id")),
                    "history": [_columns(h, ("invitation_id",)) for h in invitation.history],
                    "page_views": [_columns(v, ("invitation_id",)) for v in views],
                }
            )
        messages = [
            _columns(m, ("recipient_id",))
            for m in session.scalars(
                select(OutboundMessage)
                .where(OutboundMessage.recipient_id == recipient.id)
                .order_by(OutboundMessage.id)
            )
        ]
    suppressions = [
        {"reason": s.reason, "at": _plain(s.at)}
        for s in session.scalars(select(Suppression).where(Suppression.email_key.in_([key, hashed])))
    ]
    _audit(
        session,
        "export",
        actor,
        hashed,
        now,
        found=recipient is not None,
        invitations=len(invitations),
        messages=len(messages),
    )
    session.flush()
    return {
        "address": address.strip(),
        "exported_at": now.isoformat(),
        "recipient": _columns(recipient) if recipient is not None else None,
        "invitations": invitations,
        "messages": messages,
        "suppression": suppressions,
    }


@dataclass(frozen=True)
class Erased:
    found: bool
    invitations: int
    messages: int


def forget_person(session: Session, address: str, now: datetime, actor: str) -> Erased:
    """Erase the person at `address` everywhere: anonymise their recipient row, invitations, answer
    history, page views and outbox rows, scrub the address from import reports, replace any suppression of
    the address by an `erased` one keyed by its hash (so they are never invited again), and write a
    `forget` entry to the audit log. Counts stay right. The caller commits."""
    key = address.strip().casefold()
    hashed = erased_key(session, key)
    recipient = _find(session, key)
    invitations = messages = 0
    if recipient is not None:
        invitations = len(
            session.scalars(select(Invitation.id).where(Invitation.recipient_id == recipient.id)).all()
        )
        messages = len(
            session.scalars(
                select(OutboundMessage.id).where(OutboundMessage.recipient_id == recipient.id)
            ).all()
        )
        anonymise(session, [recipient.id], now)
    session.execute(delete(Suppression).where(Suppression.email_key == key))
    if session.scalar(select(Suppression.id).where(Suppression.email_key == hashed)) is None:
        session.add(Suppression(email_key=hashed, reason="erased", at=now))
    _scrub_import_reports(session, key)
    _audit(session, "forget", actor, hashed, now, found=recipient is not None, invitations=invitations)
    session.flush()
    return Erased(recipient is not None, invitations, messages)


def anonymise(session: Session, recipient_ids: Sequence[int], now: datetime) -> None:
    """Strip the personal data from these recipients and everything that hangs off them, in bulk; their
    invitations and answers stay as anonymous rows, and nothing unsent is ever sent to them."""
    ids = list(recipient_ids)
    if not ids:
        return
    session.flush()
    _anonymise_recipients(session, ids, now)
    _anonymise_invitations(session, ids)
    _anonymise_messages(session, ids, now)
    session.expire_all()


def _anonymise_recipients(session: Session, ids: list[int], now: datetime) -> None:
    """Empty the recipients' personal fields, and key each by its id instead of its address."""
    session.execute(
        update(Recipient)
        .where(Recipient.id.in_(ids))
        .values(
            email="",
            email_key=literal(ERASED_PREFIX) + cast(Recipient.id, String),
            first_name="",
            name_prefix="",
            last_name="",
            display_name="",
            salutation="",
            role_key=None,
            role_label="",
            municipality_code=None,
            organisation="",
            attributes={},
            tags=[],
            undeliverable=True,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )


def _anonymise_invitations(session: Session, ids: list[int]) -> None:
    """Empty the recipients' RSVP answers, revoke their links, and strip the browser details from their
    answer history and page views."""
    invitation_ids = select(Invitation.id).where(Invitation.recipient_id.in_(ids)).scalar_subquery()
    # A new token version revokes the personal RSVP link.
    session.execute(
        update(Invitation)
        .where(Invitation.recipient_id.in_(ids))
        .values(responses={}, token_version=Invitation.token_version + 1)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(AnswerHistory)
        .where(AnswerHistory.invitation_id.in_(invitation_ids))
        .values(user_agent="", detail={})
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(PageView)
        .where(PageView.invitation_id.in_(invitation_ids))
        .values(user_agent="")
        .execution_options(synchronize_session=False)
    )


def _anonymise_messages(session: Session, ids: list[int], now: datetime) -> None:
    """Cancel the recipients' unsent outbox rows, and empty the address and reply of all of them."""
    session.execute(
        update(OutboundMessage)
        .where(OutboundMessage.recipient_id.in_(ids), OutboundMessage.status.in_(UNSENT))
        .values(status=MessageStatus.CANCELLED, next_attempt_at=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(OutboundMessage)
        .where(OutboundMessage.recipient_id.in_(ids))
        .values(to_address="", last_reply="", updated_at=now)
        .execution_options(synchronize_session=False)
    )


def _scrub_import_reports(session: Session, key: str) -> None:
    """Rejected rows and warnings in import reports may quote the address; replace it."""
    pattern = re.compile(re.escape(key), re.IGNORECASE)
    for job in session.scalars(select(ImportJob)):
        for field in ("report", "counts"):
            text = json.dumps(getattr(job, field), ensure_ascii=False)
            if pattern.search(text):
                setattr(job, field, json.loads(pattern.sub(ERASED_TEXT, text)))


def purge_expired(session: Session, now: datetime, days: int, actor: str = "retention") -> int:
    """Anonymise every recipient whose last event ended more than `days` days before `now` (and those
    invited to nothing, created that long ago); returns how many. Writes a `retention-purge` entry to the
    audit log when any were purged. Suppressions stay: they honour an objection. The caller commits."""
    if days <= 0:
        return 0
    cutoff = now - timedelta(days=days)
    last_end = (
        select(Invitation.recipient_id.label("recipient_id"), func.max(Event.ends_at).label("last_end"))
        .join(Event, Event.id == Invitation.event_id)
        .group_by(Invitation.recipient_id)
        .subquery()
    )
    due = session.scalars(
        select(Recipient.id)
        .outerjoin(last_end, last_end.c.recipient_id == Recipient.id)
        .where(
            Recipient.email_key.not_like(f"{ERASED_PREFIX}%"),
            or_(
                last_end.c.last_end < cutoff,
                and_(last_end.c.last_end.is_(None), Recipient.created_at < cutoff),
            ),
        )
        .order_by(Recipient.id)
    ).all()
    for start in range(0, len(due), CHUNK):
        anonymise(session, due[start : start + CHUNK], now)
    if due:
        _audit(session, "retention-purge", actor, "", now, recipients=len(due), days=days)
    session.flush()
    return len(due)
