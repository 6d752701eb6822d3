"""Use case: one test message, for a made-up person, to one address. `invites send --test-to` and the
"test send to myself" button of the preview page both send it with `send_test`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from invites.adapters.mailer import SendOutcome, SmtpMailer
from invites.adapters.sink import Sink
from invites.domain.states import MessageStatus
from invites.messages.compose import composer_for
from invites.messages.rendering import TemplateSet
from invites.messages.samples import sample_invitation, sample_recipient
from invites.services.events import get_event
from invites.settings import Settings, SmtpTarget


class NotSent(Exception):
    """The SMTP server did not take the test message; the message names the address and its reply."""


@dataclass(frozen=True)
class SentTest:
    kind: str
    to: str
    # Where it went: "host:port", or the local sink and its folder when no INVITES_SMTP_URL is set.
    via: str
    local: bool
    reply: str


def send_test(
    factory: sessionmaker[Session],
    settings: Settings,
    templates: TemplateSet,
    slug: str,
    kind: str,
    address: str,
    language: str | None,
    now: datetime,
) -> SentTest:
    """Compose the message for a made-up person at `address` and hand it to INVITES_SMTP_URL right away
    (without one, to a local sink writing var/outbox). No outbox row: nobody in the audience is touched.

    Raises NotFound for an unknown event, InputError for an unknown kind or language or a broken template
    (CancelledEvent for a kind that would carry a REQUEST for a cancelled event: the made-up person has
    accepted, so an rsvp-confirmation too), and NotSent when the server refuses the message.
    """
    with factory() as session:
        event = get_event(session, slug)
        composer = composer_for(settings, event, kind, templates, now, test=True)
        composed = composer.compose(
            sample_recipient(address.strip(), language or event.language), sample_invitation(kind), language
        )
    target, sink = settings.smtp, None
    if target is None:
        sink = Sink(settings.outbox_dir).start()
        target = SmtpTarget.parse(sink.url)
    try:
        mailer = SmtpMailer(target, timeout=settings.smtp_timeout, verify_tls=settings.smtp_verify_tls)
        outcome = asyncio.run(_send_once(mailer, settings.sender, composed.to, composed.data))
    finally:
        if sink is not None:
            sink.stop()
    via = f"the local sink ({settings.outbox_dir})" if sink else f"{target.host}:{target.port}"
    if outcome.status != MessageStatus.SENT:
        raise NotSent(f"test message to {composed.to} not sent: {outcome.reply}")
    return SentTest(kind, composed.to, via, sink is not None, outcome.reply)


async def _send_once(mailer: SmtpMailer, sender: str, recipient: str, data: bytes) -> SendOutcome:
    try:
        return await mailer.send(sender, recipient, data)
    finally:
        await mailer.close()
