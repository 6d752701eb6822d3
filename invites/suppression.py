"""Use case: never mail an address again (it unsubscribed, bounced hard, or asked to be forgotten)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from invites.models import Suppression

REASONS = ("unsubscribed", "hard-bounce", "erased", "organiser")


def suppress(session: Session, address: str, reason: str, now: datetime) -> bool:
    """Add the address to the suppression list; False when it was there already. The caller commits."""
    if reason not in REASONS:
        raise ValueError(f"unknown suppression reason {reason!r}; one of {', '.join(REASONS)}")
    key = address.strip().casefold()
    if session.scalar(select(Suppression.id).where(Suppression.email_key == key)):
        return False
    session.add(Suppression(email_key=key, reason=reason, at=now))
    session.flush()
    return True
