"""The SQL of segments (invites.domain.segment): which recipients a segment selects, and the coverage matrix
of municipality × role."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, String, and_, cast, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from invites.db.models import Event, Invitation, Recipient
from invites.domain.reference import Municipalities, load_municipalities, roles
from invites.domain.segment import Segment
from invites.domain.states import Answer

UNKNOWN = "unknown"


def segment_conditions(segment: Segment, event: Event) -> list[ColumnElement[bool]]:
    """SQL conditions on Recipient (joined to the event's Invitation) that select this segment.

    A registration still waiting for its double opt-in is in no segment.
    """
    found: list[ColumnElement[bool]] = [Invitation.pending.is_(False)]
    if segment.roles:
        found.append(Recipient.role_key.in_(segment.roles))
    if segment.municipalities:
        found.append(Recipient.municipality_code.in_(segment.municipalities))
    if segment.languages:
        found.append(Recipient.language.in_(segment.languages))
    if segment.tags:
        # Tags are a JSON list; its text form holds each tag quoted, on SQLite and PostgreSQL alike.
        text = cast(Recipient.tags, String)
        found.append(or_(*(text.like(f'%"{_like_escape(tag)}"%', escape="\\") for tag in segment.tags)))
    if segment.attended_previous:
        earlier = aliased(Event)
        other = aliased(Invitation)
        found.append(
            exists(
                select(other.id)
                .join(earlier, earlier.id == other.event_id)
                .where(
                    other.recipient_id == Recipient.id,
                    other.answer == Answer.ACCEPTED,
                    earlier.id != event.id,
                    earlier.starts_at < event.starts_at,
                    or_(
                        and_(earlier.series_id.is_not(None), earlier.series_id == event.series_id),
                        earlier.id == event.predecessor_id,
                    ),
                )
            )
        )
    return found


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def coverage(
    session: Session, event: Event, segment: Segment | None = None, places: Municipalities | None = None
) -> dict[str, Any]:
    """How many recipients per municipality × role are invited, have accepted and have declined.

    Every municipality of the reference list that existed on the event's date gets a row, so the ones nobody
    is coming from show up as zeros.
    """
    segment = segment or Segment()
    places = places or load_municipalities()
    rows = session.execute(
        select(Recipient.municipality_code, Recipient.role_key, Invitation.answer, func.count())
        .join(Invitation, Invitation.recipient_id == Recipient.id)
        .where(Invitation.event_id == event.id, *segment_conditions(segment, event))
        .group_by(Recipient.municipality_code, Recipient.role_key, Invitation.answer)
    ).all()
    role_order = [key for key in roles() if key != "other"] + ["other", UNKNOWN]
    day = event.starts_at.date()
    reference = {m.code: m.name for m in places.existing_on(day)}
    matrix: dict[str, dict[str, dict[str, int]]] = {}
    for code, role, answer, count in rows:
        cell = matrix.setdefault(code or UNKNOWN, {}).setdefault(role or UNKNOWN, _empty())
        cell["invited"] += count
        if answer in (Answer.ACCEPTED, Answer.DECLINED, Answer.TENTATIVE):
            cell[answer.value] += count
    codes = list(reference) + sorted(code for code in matrix if code not in reference and code != UNKNOWN)
    if UNKNOWN in matrix:
        codes.append(UNKNOWN)
    table: list[dict[str, Any]] = []
    for code in codes:
        cells = matrix.get(code, {})
        table.append(
            {
                "code": code,
                "name": "(onbekend)" if code == UNKNOWN else places.name(code),
                "roles": {role: cells.get(role, _empty()) for role in role_order},
                "total": _sum(cells.values()),
            }
        )
    totals = {role: _sum(row["roles"][role] for row in table) for role in role_order}
    return {
        "event": event.slug,
        "segment": segment.as_dict(),
        "roles": role_order,
        "municipalities": table,
        "totals": {**totals, "all": _sum(totals.values())},
        "nobody_accepted": [
            row["name"] for row in table if row["code"] != UNKNOWN and not row["total"]["accepted"]
        ],
    }


def _empty() -> dict[str, int]:
    return {"invited": 0, "accepted": 0, "tentative": 0, "declined": 0}


def _sum(cells: Any) -> dict[str, int]:
    total = _empty()
    for cell in cells:
        for key in total:
            total[key] += cell[key]
    return total
