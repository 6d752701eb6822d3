"""Unsubscribing: the use cases behind every message's List-Unsubscribe links.

The token (`tokens.unsubscribe_token`) is `<public_id>.<mac>`: the invitation's public id with an HMAC for
the purpose "unsubscribe". It is not the RSVP token: revoking RSVP links must not break the way out.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from invites.db.models import Event, Invitation, Recipient, Suppression
from invites.domain import evidence
from invites.domain.errors import NotFound
from invites.domain.states import AnswerSource, HeldKind
from invites.domain.tokens import split_token, unsubscribe_token
from invites.services.held import Held, delivered_at, hold, replace_held
from invites.services.suppression import suppress


@dataclass(frozen=True)
class Subscriber:
    recipient: Recipient
    event: Event
    unsubscribed: bool
    invitation_id: int = 0


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
    return Subscriber(recipient, invitation.event, done is not None, invitation.id)


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
    return Subscriber(subscriber.recipient, subscriber.event, True, subscriber.invitation_id)


def one_click(fields: dict[str, str]) -> bool:
    """RFC 8058: a mailbox provider's POST to the List-Unsubscribe header's URL, not a press of our page
    (the page's form carries its stamp, `served`; a gateway presses the page, not the header)."""
    return fields.get("List-Unsubscribe") == "One-Click" and "served" not in fields


def unsubscribe_from_page(
    session: Session,
    secret: str,
    token: str,
    fields: dict[str, str],
    client: str,
    user_agent: str,
    now: datetime,
) -> tuple[Subscriber, evidence.Judgement]:
    """A press of the unsubscribe page: carried out when it was a person's (invites.domain.evidence.judge),
    else held for the organiser and for the person's confirmation, so a link scanner unsubscribes nobody.
    Commits."""
    subscriber = find_subscriber(session, secret, token)
    if subscriber.unsubscribed:
        return subscriber, evidence.Judgement(True)
    person = (subscriber.invitation_id, subscriber.event.id, subscriber.recipient.id)
    delivered = delivered_at(session, [person]).get(subscriber.invitation_id)
    proof = evidence.gather(secret, token, fields, client, user_agent, delivered, now)
    judgement = evidence.judge(proof)
    if judgement.person:
        replace_held(session, [subscriber.invitation_id], now, HeldKind.UNSUBSCRIBE)
        return unsubscribe(session, secret, token, now), judgement
    held = Held(
        invitation_id=subscriber.invitation_id,
        event_id=subscriber.event.id,
        source=AnswerSource.WEB,
        reason=judgement.reason,
        evidence=proof.to_json(),
        kind=HeldKind.UNSUBSCRIBE,
    )
    hold(session, [held], now)
    session.commit()
    return subscriber, judgement
