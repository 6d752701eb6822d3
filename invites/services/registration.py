"""Use case: public registration (the "Aanmelden" link), with double opt-in.

A registration makes a pending invitation and mails its personal link. Opening that link and pressing
"Ja, ik kom" (a POST, like every answer) is the opt-in: the invitation stops being pending and the answer is
recorded, source registration, under the capacity like any other. Until then the registrant is in no count,
list or campaign.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from email_validator import EmailNotValidError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from invites.db.models import Event, Invitation, Recipient
from invites.domain.audience import check_address
from invites.domain.errors import InputError, NotFound
from invites.domain.reference import LANGUAGES, Municipalities, load_municipalities, match_role
from invites.domain.states import EventStatus, InvitationSource
from invites.domain.tokens import new_public_id
from invites.services import rsvp
from invites.services.events import get_event
from invites.services.outbox import queue_personal
from invites.services.suppression import suppressed_among
from invites.settings import Settings

MAX_FIELD = 200


@dataclass(frozen=True)
class RegistrationForm:
    name: str
    email: str
    role: str = ""
    municipality: str = ""
    organisation: str = ""
    language: str = "nl"
    # The honeypot: a field people never see, so never fill in.
    website: str = ""


@dataclass(frozen=True)
class Registered:
    invitation_id: int | None
    # False when nothing may be mailed (a bot, or a suppressed address); the page says the same either way.
    mail: bool


def registration_state(event: Event, now: datetime) -> str:
    """ "open", or why not: "disabled", "not-yet", "closed" or "cancelled"."""
    if event.status == EventStatus.CANCELLED:
        return "cancelled"
    if not event.registration_enabled:
        return "disabled"
    if event.registration_opens_at and now < event.registration_opens_at:
        return "not-yet"
    if now >= (event.registration_closes_at or event.starts_at):
        return "closed"
    return "open"


def allows_forwarded(event: Event) -> bool:
    return bool((event.extra.get("registration") or {}).get("allow_forwarded"))


def register(
    session: Session,
    event: Event,
    form: RegistrationForm,
    now: datetime,
    referred_by: Invitation | None = None,
    places: Municipalities | None = None,
) -> Registered:
    """Record a registration as a pending invitation. The caller commits, then mails the invitation's link.

    Through a forwarded personal link (`referred_by`) it is allowed only when the organiser allows that, and
    then even when public registration is off; it always registers the person filling in the form, never the
    one who forwarded the link.
    """
    _check_open(event, now, referred_by)
    if form.website:
        return Registered(None, mail=False)
    name = " ".join(form.name.split())[:MAX_FIELD]
    if not name:
        raise InputError("vul uw naam in")
    try:
        address = check_address(form.email.strip())
    except EmailNotValidError as exc:
        raise InputError(f"dat e-mailadres klopt niet: {exc}") from exc
    key = address.casefold()
    if suppressed_among(session, [key]):
        return Registered(None, mail=False)
    recipient = session.scalar(select(Recipient).where(Recipient.email_key == key))
    if recipient is None:
        recipient = _add_recipient(session, form, address, key, name, now, places or load_municipalities())
    invitation = session.scalar(
        select(Invitation).where(Invitation.event_id == event.id, Invitation.recipient_id == recipient.id)
    )
    if invitation is None:
        invitation = _add_invitation(session, event, recipient, referred_by, now)
    # Already invited or registered: mail the personal link again, whatever state it is in.
    return Registered(invitation.id, mail=True)


# What the form says for each state of `registration_state` but "open".
CLOSED_BECAUSE = {
    "cancelled": "deze bijeenkomst gaat niet door",
    "disabled": "aanmelden is voor deze bijeenkomst niet mogelijk",
    "not-yet": "aanmelden is nog niet geopend",
    "closed": "aanmelden is gesloten",
}


def _check_open(event: Event, now: datetime, referred_by: Invitation | None) -> None:
    """Raise InputError, saying why, unless this registration may be made now."""
    state = registration_state(event, now)
    if referred_by is not None:
        if not allows_forwarded(event):
            raise InputError(
                "aanmelden via een doorgestuurde uitnodiging is voor deze bijeenkomst niet mogelijk"
            )
        if state == "disabled":
            state = "open" if now < (event.registration_closes_at or event.starts_at) else "closed"
    if state != "open":
        raise InputError(CLOSED_BECAUSE[state])


def _add_recipient(
    session: Session,
    form: RegistrationForm,
    address: str,
    key: str,
    name: str,
    now: datetime,
    places: Municipalities,
) -> Recipient:
    """Add the registrant as a new recipient, tagged `aanmelding`, and flush it to get its id."""
    role_text = form.role.strip()[:MAX_FIELD]
    recipient = Recipient(
        email=address,
        email_key=key,
        display_name=name,
        role_key=match_role(role_text) if role_text else None,
        role_label=role_text,
        municipality_code=places.match(form.municipality)
        if form.municipality
        else places.match(form.organisation)
        if form.organisation
        else None,
        organisation=form.organisation.strip()[:MAX_FIELD],
        language=form.language if form.language in LANGUAGES else "nl",
        first_name="",
        name_prefix="",
        last_name="",
        salutation="",
        attributes={},
        tags=["aanmelding"],
        created_at=now,
        updated_at=now,
    )
    session.add(recipient)
    session.flush()
    return recipient


def _add_invitation(
    session: Session, event: Event, recipient: Recipient, referred_by: Invitation | None, now: datetime
) -> Invitation:
    """Add a pending invitation of the registration source, and flush it to get its id."""
    invitation = Invitation(
        event_id=event.id,
        recipient_id=recipient.id,
        public_id=new_public_id(),
        token_version=1,
        source=InvitationSource.REGISTRATION,
        pending=True,
        guests=0,
        responses={},
        referred_by_id=referred_by.id if referred_by else None,
        created_at=now,
    )
    session.add(invitation)
    session.flush()
    return invitation


def referrer(session: Session, secret: str, event: Event, via: str) -> Invitation | None:
    """The invitation whose personal link was forwarded (`via`, its token), when it is of this event."""
    if not via:
        return None
    try:
        view = rsvp.find_by_token(session, secret, via)
    except NotFound:
        return None
    return view.invitation if view.event.id == event.id else None


def register_and_mail(
    factory: sessionmaker[Session],
    settings: Settings,
    slug: str,
    form: RegistrationForm,
    now: datetime,
    enqueue: Callable[[list[int]], None],
    *,
    via: str = "",
    places: Municipalities | None = None,
) -> None:
    """The use case of the "Aanmelden" form: record the registration (`register`) and queue the mail with
    its personal link, the double opt-in, in one transaction of its own; then hand the mail's outbox row to
    `enqueue`. Nothing is mailed to a bot or a suppressed address. Raises NotFound for an unknown event
    and InputError for a refused registration; then nothing is stored."""
    with factory() as session:
        event = get_event(session, slug)
        registered = register(
            session, event, form, now, referrer(session, settings.secret_key, event, via), places
        )
        queued = None
        if registered.mail and registered.invitation_id is not None:
            invitation = session.get_one(Invitation, registered.invitation_id)
            cause = f"reg-{now:%Y%m%d%H%M%S%f}"
            queued = queue_personal(session, "registration-confirmation", invitation, cause, settings, now)
        session.commit()
    if queued is not None:
        enqueue([queued])
