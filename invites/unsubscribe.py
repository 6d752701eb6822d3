"""Unsubscribing: the token in every message's List-Unsubscribe links, and the use case that honours it.

The token is `<public_id>.<mac>`: the invitation's public id with an HMAC for the purpose "unsubscribe". It is
not the RSVP token: revoking RSVP links (a new token version) must not break the way out of the list.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from invites.errors import NotFound
from invites.models import Event, Invitation, Recipient, Suppression
from invites.suppression import suppress
from invites.tokens import split_token


def unsubscribe_token(secret: str, public_id: str) -> str:
    digest = hmac.new(secret.encode(), f"unsubscribe:{public_id}".encode(), hashlib.sha256).digest()
    return f"{public_id}.{base64.urlsafe_b64encode(digest[:16]).rstrip(b'=').decode()}"


@dataclass(frozen=True)
class Subscriber:
    recipient: Recipient
    event: Event
    unsubscribed: bool


def find_subscriber(session: Session, secret: str, token: str) -> Subscriber:
    """Who an unsubscribe token belongs to. A forged or unknown token is NotFound, and says no more."""
    public_id = split_token(token)
    invitation = (
        session.scalar(select(Invitation).where(Invitation.public_id == public_id)) if public_id else None
    )
    if invitation is None or not hmac.compare_digest(
        token.encode(), unsubscribe_token(secret, invitation.public_id).encode()
    ):
        raise NotFound("no such subscription")
    recipient = invitation.recipient
    done = session.scalar(select(Suppression.id).where(Suppression.email_key == recipient.email_key))
    return Subscriber(recipient, invitation.event, done is not None)


def unsubscribe(session: Session, secret: str, token: str, now: datetime) -> Subscriber:
    """Put the token's address on the suppression list, so no campaign mails it again. Doing it twice is
    harmless. Commits."""
    subscriber = find_subscriber(session, secret, token)
    if not subscriber.unsubscribed:
        try:
            suppress(session, subscriber.recipient.email, "unsubscribed", now)
            session.commit()
        except IntegrityError:
            # Another request put the same address on the list first: the outcome is the same.
            session.rollback()
    return Subscriber(subscriber.recipient, subscriber.event, True)
