"""Use case: never mail an address again (it unsubscribed, bounced hard, or asked to be forgotten)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from invites.db.models import PrivacyKey, Suppression

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


def _privacy_key(session: Session) -> bytes:
    key = session.scalar(select(PrivacyKey.key).where(PrivacyKey.id == 1))
    if key is None:
        raise RuntimeError("the privacy key is missing; run `invites db upgrade`")
    return key.encode()


def _hashed(key: bytes, address: str) -> str:
    return "erased:" + hmac.new(key, address.strip().casefold().encode(), hashlib.sha256).hexdigest()


def erased_key(session: Session, address: str) -> str:
    """The suppression key of an erased address: a keyed hash, so the address itself is not kept."""
    return _hashed(_privacy_key(session), address)


def suppressed_among(session: Session, keys: Collection[str]) -> set[str]:
    """Those of the address keys (folded addresses) that must never be mailed: listed as they are, or
    erased (listed by their keyed hash)."""
    if not keys:
        return set()
    secret = _privacy_key(session)
    hashed = {_hashed(secret, key): key for key in keys}
    found = session.scalars(select(Suppression.email_key).where(Suppression.email_key.in_([*keys, *hashed])))
    return {hashed.get(key, key) for key in found}
