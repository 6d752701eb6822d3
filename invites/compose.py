"""Composing the exact bytes of one message: MIME per CalConnect's iMIP practice, with the calendar part.

A `Composer` is built once per (event, kind, language set) and holds everything that does not change per
recipient; `compose` adds the person.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr

from invites.errors import InputError
from invites.ics import CalendarEvent, CalendarTemplate
from invites.models import Event, Invitation, Recipient
from invites.rendering import (
    TemplateSet,
    calendar_links,
    event_context,
    inline_css,
    programme_text,
    recipient_context,
    render,
)
from invites.tokens import make_token

CALENDAR_METHOD = {
    "invitation": "REQUEST",
    "update": "REQUEST",
    "reminder": "REQUEST",
    "cancellation": "CANCEL",
}


@dataclass(frozen=True)
class Composed:
    to: str
    message_id: str
    subject: str
    data: bytes


def sender_domain(sender: str) -> str:
    address = parseaddr(sender)[1]
    if "@" not in address:
        raise InputError(f"INVITES_FROM {sender!r} holds no e-mail address")
    return address.rsplit("@", 1)[1]


def message_id(secret: str, domain: str, kind: str, event_id: int, recipient_id: int, sequence: int) -> str:
    """The same Message-ID every time for (event, recipient, kind, sequence): a resend can be collapsed."""
    key = f"{kind}.{event_id}.{recipient_id}.{sequence}"
    tag = hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()[:12]
    return f"<{key}.{tag}@{domain}>"


def _single_line(value: str, what: str) -> str:
    if "\r" in value or "\n" in value:
        raise InputError(f"{what} holds a line break, which could forge a header: {value!r}")
    return value


class Composer:
    def __init__(
        self,
        event: Event,
        kind: str,
        templates: TemplateSet,
        *,
        sender: str,
        base_url: str,
        secret: str,
        now: datetime,
    ) -> None:
        self.event = event
        self.kind = kind
        self.sender = _single_line(sender, "INVITES_FROM")
        self.domain = sender_domain(sender)
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.now = now
        self.templates = templates
        self.method = CALENDAR_METHOD.get(kind)
        self._contexts = {language: event_context(event, language) for language in ("nl", "en")}
        self._descriptions = {language: programme_text(event, language) for language in ("nl", "en")}
        self._links = {lang: calendar_links(event, text) for lang, text in self._descriptions.items()}
        self._calendars: dict[str, CalendarTemplate] = {}
        if self.method:
            for language in ("nl", "en"):
                self._calendars[language] = CalendarTemplate(
                    CalendarEvent(
                        uid=event.ics_uid,
                        sequence=event.sequence,
                        summary=event.title,
                        description=self._descriptions[language],
                        starts_at=event.starts_at,
                        ends_at=event.ends_at,
                        timezone=event.timezone,
                        location=self._contexts[language]["location"],
                        geo=(event.venue_lat, event.venue_lon)
                        if event.venue_lat is not None and event.venue_lon is not None
                        else None,
                        organiser_name=event.organiser_name,
                        organiser_email=event.organiser_email or parseaddr(sender)[1],
                    ),
                    self.method,
                    now,
                )

    def rsvp_url(self, invitation: Invitation) -> str:
        return f"{self.base_url}/r/{make_token(self.secret, invitation.public_id, invitation.token_version)}"

    def context(self, recipient: Recipient, invitation: Invitation, language: str) -> dict[str, object]:
        url = self.rsvp_url(invitation)
        return {
            "event": self._contexts[language],
            "recipient": recipient_context(recipient, language),
            "links": {
                "rsvp": url,
                "accept": f"{url}?answer=accepted",
                "decline": f"{url}?answer=declined",
                "tentative": f"{url}?answer=tentative",
                "ics": f"{url}/invite.ics",
                **self._links[language],
            },
            "kind": self.kind,
        }

    def calendar(self, recipient: Recipient, invitation: Invitation, language: str) -> bytes | None:
        template = self._calendars.get(language)
        if template is None:
            return None
        return template.for_attendee(recipient.email, recipient.display_name, self.rsvp_url(invitation))

    def compose(self, recipient: Recipient, invitation: Invitation, language: str | None = None) -> Composed:
        """The RFC 5322 bytes for one recipient. Raises InputError on a template error or a forged field."""
        language = language or recipient.language or self.event.language
        templates = self.templates.get(self.kind, language)
        context = self.context(recipient, invitation, language)
        what = f"{self.kind}/{language}"
        subject = " ".join(render(templates.subject, context, what).split())
        text = render(templates.text, context, what).strip() + "\n"
        html = inline_css(render(templates.html, context, what))
        mid = message_id(
            self.secret, self.domain, self.kind, self.event.id, recipient.id, self.event.sequence
        )

        message = EmailMessage(policy=SMTP)
        message["From"] = self.sender
        message["To"] = Address(
            display_name=_single_line(recipient.display_name, "the recipient's name"),
            addr_spec=_single_line(recipient.email, "the recipient's address"),
        )
        message["Subject"] = _single_line(subject, "the subject")
        message["Date"] = format_datetime(self.now)
        message["Message-ID"] = mid
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
        message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
        ics = self.calendar(recipient, invitation, language)
        if ics is not None:
            ics_text = ics.decode("utf-8")
            message.add_alternative(
                ics_text, subtype="calendar", charset="utf-8", cte="base64", params={"method": self.method}
            )
            message.add_attachment(ics, maintype="application", subtype="ics", filename="invite.ics")
        # Last: set_content and add_attachment move or drop Content-* headers set before them.
        message["Content-Language"] = language
        return Composed(to=recipient.email, message_id=mid, subject=subject, data=message.as_bytes())
