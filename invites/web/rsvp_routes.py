"""The RSVP page: `GET /r/{token}` shows it (and logs an open), `POST /r/{token}` answers (the rush of
answers comes through invites/web/answer_batches.py first, which hands on whatever is not a plain success),
and `/r/{token}/invite.ics` downloads the calendar file. Routes parse, call a service, and present."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from invites.domain import evidence
from invites.domain.errors import InputError, NotFound
from invites.domain.reference import LANGUAGES
from invites.domain.states import EventStatus
from invites.messages.compose import Composer
from invites.messages.rendering import event_context
from invites.runtime import Runtime
from invites.services import answers, registration, rsvp
from invites.services.answers import Verdict
from invites.web import answer_batches
from invites.web.deps import RuntimeDep, SessionDep
from invites.web.pages import templates

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)

ANSWER_LABELS = {
    "nl": {"accepted": "Ja, ik kom", "tentative": "Misschien", "declined": "Nee, ik kan niet"},
    "en": {"accepted": "Yes, I will attend", "tentative": "Maybe", "declined": "No, I can't"},
}


def page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def not_found(request: Request) -> HTMLResponse:
    return page(request, "not_found.html", {"lang": "nl"}, status_code=404)


def too_many(request: Request) -> HTMLResponse:
    return page(
        request,
        "error.html",
        {
            "lang": "nl",
            "message": "U hebt deze pagina te vaak opgevraagd. Probeer het over een minuut opnieuw.",
        },
        status_code=429,
    )


def rsvp_context(
    secret: str,
    view: rsvp.RsvpView,
    token: str,
    language: str,
    preselect: str = "",
    saved: bool = False,
    error: str = "",
    form: dict[str, str] | None = None,
    flagged: bool = False,
    held: answers.WebAnswer | None = None,
) -> dict[str, Any]:
    invitation = view.invitation
    now = datetime.now(UTC)
    return {
        "lang": language,
        "token": token,
        "event": event_context(view.event, language),
        "recipient": view.recipient,
        "current": invitation.answer.value if invitation.answer else "",
        "waitlist_position": invitation.waitlist_position,
        "guests": invitation.guests,
        "responses": form if form is not None else invitation.responses,
        "options": rsvp.rsvp_options(view.event),
        "preselect": preselect if preselect in ANSWER_LABELS["nl"] else "",
        "labels": ANSWER_LABELS[language],
        "saved": saved,
        "error": error,
        "cancelled": view.event.status == "cancelled",
        # When this page was served, signed: a press says how long after it came (invites.domain.evidence).
        "served": evidence.page_stamp(secret, token, now, flagged),
        # A press that was held: the page asks for it once more, the one extra step without scripts.
        "held": held,
        # Someone reading a forwarded link may sign up as themselves, never answer as the invitee.
        "forward_url": f"/e/{view.event.slug}/register?via={token}"
        if registration.allows_forwarded(view.event)
        else "",
    }


@router.api_route("/r/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False)
def rsvp_page(
    request: Request,
    token: str,
    session: SessionDep,
    rt: RuntimeDep,
    answer: str = "",
    lang: str = "",
    saved: int = 0,
) -> HTMLResponse:
    # Link scanners fetch this page: it never changes an answer. A GET is logged as an open, flagged
    # when it looks like a scanner; a HEAD is not even that.
    if not rt.limiter.allow_rsvp(request.client.host if request.client else "?", token):
        return too_many(request)
    try:
        view = rsvp.find_by_token(session, rt.settings.secret_key, token)
    except NotFound:
        return not_found(request)
    flagged = False
    if request.method == "GET":
        user_agent, now = request.headers.get("user-agent", ""), datetime.now(UTC)
        invitation_id = view.invitation.id
        try:
            flagged = rsvp.log_open(session, view.invitation, user_agent, now).likely_scanner
            session.commit()
        except SQLAlchemyError as exc:
            # The open is a statistic; the page is the invitee's. A database that cannot take the write
            # (SQLite while a long import holds its write lock) costs the statistic, never the page.
            session.rollback()
            reason = getattr(exc, "orig", None) or exc  # the driver's words, not the statement and its values
            log.warning(
                "RSVP page shown without logging the open of invitation %s: %s", invitation_id, reason
            )
            flagged = evidence.likely_scanner(user_agent, None, now)
    language = lang if lang in LANGUAGES else (view.recipient.language or view.event.language)
    context = rsvp_context(
        rt.settings.secret_key, view, token, language, answer, bool(saved), flagged=flagged
    )
    return page(request, "rsvp.html", context)


def answer_from_form(request: Request, token: str, rt: Runtime, form: dict[str, str]) -> Response:
    # A request the batch passed on (answer_batches.py) was counted there: only render its verdict.
    verdict = request.scope.get(answer_batches.VERDICT)
    if verdict == Verdict.LIMITED or (
        verdict is None and not rt.limiter.allow_rsvp(request.client.host if request.client else "?", token)
    ):
        return too_many(request)
    with rt.sessions() as session:
        try:
            view = rsvp.find_by_token(session, rt.settings.secret_key, token)
        except NotFound:
            return not_found(request)
        lang = form.get("lang", "")
        language = lang if lang in LANGUAGES else (view.recipient.language or view.event.language)
        client = request.client.host if request.client else "?"
        answer = answers.from_form(token, form, request.headers.get("user-agent", ""), client)
        try:
            if verdict == Verdict.HELD:
                result = verdict  # held by the batch already: only ask for the confirmation
            else:
                result, notices = answers.record_one(
                    session, rt.settings, view.invitation, answer, datetime.now(UTC)
                )
                session.commit()
                if notices:
                    rt.enqueue(notices)
            if result == Verdict.HELD:
                context = rsvp_context(
                    rt.settings.secret_key, view, token, language, answer.answer, held=answer
                )
                return page(request, "rsvp.html", context, status_code=202)
        except InputError as exc:
            session.rollback()
            view = rsvp.find_by_token(session, rt.settings.secret_key, token)
            context = rsvp_context(
                rt.settings.secret_key,
                view,
                token,
                language,
                answer.answer,
                error=str(exc),
                form=answer.responses,
            )
            return page(request, "rsvp.html", context, status_code=400)
    suffix = f"&lang={lang}" if lang in LANGUAGES else ""
    return RedirectResponse(f"/r/{token}?saved=1{suffix}", status_code=303)


@router.post("/r/{token}", response_class=HTMLResponse, response_model=None)
async def rsvp_answer(request: Request, token: str, rt: RuntimeDep) -> Response:
    form = await request.form()
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    # The rate limit waits on Redis like the answer waits on the database: both go to the thread pool
    # in one trip, so this process's event loop never blocks on either.
    return await run_in_threadpool(answer_from_form, request, token, rt, fields)


@router.get("/r/{token}/invite.ics")
def rsvp_ics(request: Request, token: str, session: SessionDep, rt: RuntimeDep) -> Response:
    # Counted with the page's own requests: the same link and client limits, one budget for both.
    if not rt.limiter.allow_rsvp(request.client.host if request.client else "?", token):
        return too_many(request)
    try:
        view = rsvp.find_by_token(session, rt.settings.secret_key, token)
    except NotFound:
        return Response("Niet gevonden", status_code=404, media_type="text/plain; charset=utf-8")
    # A link in an old invitation, followed after the event was cancelled, must take the meeting out.
    cancelled = view.event.status == EventStatus.CANCELLED
    composer = Composer(
        view.event,
        "cancellation" if cancelled else "invitation",
        rt.templates,
        sender=rt.settings.sender,
        base_url=rt.settings.base_url,
        secret=rt.settings.secret_key,
        now=datetime.now(UTC),
    )
    data = composer.calendar(view.recipient, view.invitation, view.recipient.language) or b""
    return Response(
        data,
        media_type=f"text/calendar; charset=utf-8; method={composer.method}",
        headers={"Content-Disposition": 'attachment; filename="invite.ics"'},
    )
