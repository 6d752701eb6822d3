"""Use case: import a recipient list into an event's audience."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from invites.audience import Person, Rejection, as_json, parse_people
from invites.errors import InputError
from invites.models import Event, ImportJob, Invitation, InvitationSource, Recipient, Suppression
from invites.tokens import new_public_id

PERSON_FIELDS = (
    "email",
    "first_name",
    "name_prefix",
    "last_name",
    "display_name",
    "salutation",
    "role_key",
    "role_label",
    "municipality_code",
    "organisation",
    "language",
)


@dataclass
class ImportReport:
    accepted: int = 0
    updated: int = 0
    duplicates: int = 0
    suppressed: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "updated": self.updated,
            "duplicates": self.duplicates,
            "suppressed": self.suppressed,
            "rejected": as_json(self.rejected),
            "warnings": self.warnings,
        }


def import_list(
    session: Session, event: Event, data: bytes, filename: str, now: datetime, strict: bool = False
) -> ImportReport:
    """Add the people in a list to the event's audience, updating the ones it already has.

    Everything happens in the caller's transaction: a failure stores nothing. With `strict`, any rejected
    row rejects the whole file.
    """
    people, rejected, warnings = parse_people(data)
    report = ImportReport(rejected=rejected, warnings=warnings)
    if strict and rejected:
        first = rejected[0]
        raise InputError(
            f"{filename}: {len(rejected)} rows rejected, so nothing was imported "
            f"(first: line {first.line}, column {first.column!r}: {first.reason})"
        )
    job = ImportJob(event_id=event.id, filename=filename, status="running", created_at=now)
    session.add(job)
    session.flush()
    seen: set[str] = set()
    for person in people:
        if person.email_key in seen:
            report.duplicates += 1
            continue
        seen.add(person.email_key)
        if session.scalar(select(Suppression.id).where(Suppression.email_key == person.email_key)):
            report.suppressed += 1
            continue
        recipient = _upsert_recipient(session, person, now)
        invitation = session.scalar(
            select(Invitation).where(Invitation.event_id == event.id, Invitation.recipient_id == recipient.id)
        )
        if invitation is None:
            session.add(
                Invitation(
                    event_id=event.id,
                    recipient_id=recipient.id,
                    public_id=new_public_id(),
                    source=InvitationSource.IMPORT,
                    import_job_id=job.id,
                    created_at=now,
                )
            )
            report.accepted += 1
        else:
            report.updated += 1
    job.status = "done"
    job.finished_at = now
    job.counts = {k: v for k, v in report.as_dict().items() if isinstance(v, int)}
    job.report = report.as_dict()
    session.flush()
    return report


def _upsert_recipient(session: Session, person: Person, now: datetime) -> Recipient:
    recipient = session.scalar(select(Recipient).where(Recipient.email_key == person.email_key))
    if recipient is None:
        recipient = Recipient(email_key=person.email_key, created_at=now)
        session.add(recipient)
    for name in PERSON_FIELDS:
        setattr(recipient, name, getattr(person, name))
    recipient.attributes = {**(recipient.attributes or {}), **person.attributes}
    recipient.tags = sorted(set(recipient.tags or []) | set(person.tags))
    recipient.updated_at = now
    session.flush()
    return recipient
