"""Routes about messages: the organiser's preview of any message, and the unsubscribe page (RFC 8058).

The preview is for signed-in organisers only; the unsubscribe page is public. Its button is judged like an
answer (invites.domain.evidence), so a link scanner pressing it unsubscribes nobody; a mailbox provider's
one-click POST to the List-Unsubscribe header's URL is carried out at once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from invites.domain import evidence
from invites.domain.errors import InputError, NotFound
from invites.messages.compose import CancelledEvent, Invited, composer_for
from invites.messages.rendering import Person
from invites.messages.samples import sample_invitation, sample_recipient
from invites.runtime import Runtime
from invites.services import unsubscribe as unsubscribing
from invites.services.events import find_invitee, get_event
from invites.web.auth import organiser_router
from invites.web.deps import RuntimeDep, SessionDep
from invites.web.pages import language, translate
from invites.web.security import MESSAGE_CSP

router = APIRouter()
preview_router = organiser_router(tags=["preview"])

PREVIEW_TYPES = {
    "html": "text/html; charset=utf-8",
    "text": "text/plain; charset=utf-8",
    "subject": "text/plain; charset=utf-8",
    "ics": "text/calendar; charset=utf-8",
    "eml": "text/plain; charset=utf-8",
}


def composing_error(exc: InputError, lang: str) -> str:
    """Why a message cannot be composed, for the organiser: a cancelled event in their language."""
    if isinstance(exc, CancelledEvent):
        return translate(
            "Deze bijeenkomst is afgelast. Dit bericht zou haar met een agenda-uitnodiging weer in de "
            "agenda van de ontvanger zetten. Kies het bericht ‘Afgelasting’: dat haalt haar uit de agenda.",
            lang,
        )
    return str(exc)


def _plain(text: str, status_code: int) -> Response:
    return Response(text, status_code=status_code, media_type="text/plain; charset=utf-8")


@preview_router.get("/preview/{slug}", response_model=None)
def preview(
    request: Request,
    slug: str,
    session: SessionDep,
    rt: RuntimeDep,
    kind: str = "invitation",
    lang: str = "",
    to: str = "",
    part: str = "html",
) -> Response:
    """One message as the recipient `to` (else a made-up person) would get it; `part` picks html, text,
    subject, ics or the whole message (eml). A template error is a 400 that names the line and the cause;
    so is a message that would put a cancelled event back in calendars (a REQUEST)."""
    if part not in PREVIEW_TYPES:
        return _plain(f"part {part!r} is not one of {', '.join(PREVIEW_TYPES)}", 400)
    try:
        event = get_event(session, slug)
        recipient: Person
        invitation: Invited
        if to:
            recipient, invitation = find_invitee(session, event, to)
        else:
            recipient = sample_recipient(language=lang or event.language)
            invitation = sample_invitation(kind)
        composer = composer_for(rt.settings, event, kind, rt.templates, datetime.now(UTC))
        message_language = lang or None
        if part == "eml":
            body: str | bytes = composer.compose(recipient, invitation, message_language).data
        else:
            parts = composer.parts(recipient, invitation, message_language)
            if part == "ics":
                if parts.ics is None:
                    return _plain(f"a {kind} message carries no calendar", 404)
                body = parts.ics
            else:
                body = {"html": parts.html, "text": parts.text, "subject": parts.subject}[part]
    except NotFound as exc:
        return _plain(str(exc), 404)
    except InputError as exc:
        return _plain(composing_error(exc, language(request)), 400)
    # E-mail HTML keeps its styles inline; it runs no script and loads nothing but inline images.
    headers = {"Content-Security-Policy": MESSAGE_CSP} if part == "html" else None
    return Response(body, media_type=PREVIEW_TYPES[part], headers=headers)


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(
        '<!DOCTYPE html><html lang="nl"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)}</title><script src="/static/app.js" defer></script></head>'
        f"<body><main><h1>{escape(title)}</h1>{body}</main></body></html>",
        status_code=status_code,
    )


def _unknown() -> HTMLResponse:
    return _page("Niet gevonden", "<p>Deze afmeldlink is niet (meer) geldig.</p>", 404)


def _form(token: str, secret: str, button: str, confirm: bool = False) -> str:
    """The page's form: its signed stamp and the evidence field that static/app.js fills in."""
    stamp = evidence.page_stamp(secret, token, datetime.now(UTC))
    step = '<input type="hidden" name="step" value="confirm">' if confirm else ""
    return (
        f'<form method="post" action="/u/{escape(token)}" data-evidence>'
        f'<input type="hidden" name="served" value="{escape(stamp)}">'
        f'<input type="hidden" name="evidence" value="">{step}'
        f'<button type="submit">{escape(button)}</button></form>'
    )


def _done(address: str) -> HTMLResponse:
    return _page("Afgemeld", f"<p>{escape(address)} ontvangt geen berichten meer over bijeenkomsten.</p>")


@router.get("/u/{token}", response_class=HTMLResponse)
def unsubscribe_page(token: str, session: SessionDep, rt: RuntimeDep) -> HTMLResponse:
    # Read-only: mail scanners fetch every link, so only the POST below unsubscribes.
    try:
        subscriber = unsubscribing.find_subscriber(session, rt.settings.secret_key, token)
    except NotFound:
        return _unknown()
    if subscriber.unsubscribed:
        return _done(subscriber.recipient.email)
    return _page(
        "Afmelden",
        f"<p>Wilt u dat {escape(subscriber.recipient.email)} geen berichten meer ontvangt over bijeenkomsten "
        f"van {escape(subscriber.event.organiser_name or 'de organisatie')}?</p>"
        + _form(token, rt.settings.secret_key, "Ja, meld mij af"),
    )


@router.post("/u/{token}", response_class=HTMLResponse)
async def unsubscribe_now(request: Request, token: str, rt: RuntimeDep) -> HTMLResponse:
    """RFC 8058 one-click (a POST with List-Unsubscribe=One-Click), and the button on the page above."""
    form = await request.form()
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    client = request.client.host if request.client else "?"
    user_agent = request.headers.get("user-agent", "")
    return await run_in_threadpool(_unsubscribe, rt, token, fields, client, user_agent)


def _unsubscribe(
    rt: Runtime, token: str, fields: dict[str, str], client: str, user_agent: str
) -> HTMLResponse:
    now = datetime.now(UTC)
    secret = rt.settings.secret_key
    with rt.sessions() as session:
        try:
            if unsubscribing.one_click(fields):
                subscriber = unsubscribing.unsubscribe(session, secret, token, now)
                return _done(subscriber.recipient.email)
            subscriber, judgement = unsubscribing.unsubscribe_from_page(
                session, secret, token, fields, client, user_agent, now
            )
        except NotFound:
            return _unknown()
    if judgement.person:
        return _done(subscriber.recipient.email)
    return _page(
        "Nog één stap",
        "<p>Bevestig met de knop hieronder dat u zich wilt afmelden. Zo weten we dat u het zelf vroeg, en "
        "niet een virusscanner die de links in uw e-mail opent.</p>"
        + _form(token, secret, "Bevestigen: meld mij af", confirm=True),
        status_code=202,
    )
