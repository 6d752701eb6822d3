"""The FastAPI app. Routes parse input, call a service, and present the result; nothing more."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from invites import answers, evidence, registration, rsvp
from invites.answers import Verdict
from invites.compose import Composer
from invites.errors import InputError, NotFound
from invites.ratelimit import RateLimiter
from invites.rendering import event_context
from invites.runtime import Runtime
from invites.settings import get_settings, project_dir
from invites.web import (
    answer_batches,
    api,
    auth,
    dashboard_routes,
    event_routes,
    events_api,
    held_api,
    mail_routes,
    ops_routes,
    organiser_routes,
    registration_routes,
    reminder_routes,
    rsvps_api,
    send_routes,
    sends_api,
)
from invites.web.deps import RuntimeDep, SessionDep
from invites.web.pages import install_error_pages, templates
from invites.web.security import SecurityHeaders, docs_csp

ANSWER_LABELS = {
    "nl": {"accepted": "Ja, ik kom", "tentative": "Misschien", "declined": "Nee, ik kan niet"},
    "en": {"accepted": "Yes, I will attend", "tentative": "Maybe", "declined": "No, I can't"},
}


def create_app(runtime: Runtime | None = None) -> FastAPI:
    """The app; with no runtime given, it builds this process's own from the settings on first request."""
    settings = runtime.settings if runtime else get_settings()
    app = FastAPI(
        title="invites",
        version="0.1.0",
        description="Invitations, RSVPs and their follow-up for an event. Every route under /api/v1 needs "
        "an API token (`invites user token EMAIL`), sent as `Authorization: Bearer ...`.",
        docs_url=None,
        redoc_url=None,
    )

    @app.get("/docs", include_in_schema=False)
    def api_docs() -> HTMLResponse:
        """Swagger UI, under a policy of its own: FastAPI's default page would be blocked by ours."""
        html = bytes(get_swagger_ui_html(openapi_url="/openapi.json", title="invites API").body).decode()
        return HTMLResponse(html, headers={"Content-Security-Policy": docs_csp(html)})

    app.state.runtime = runtime
    app.state.development = settings.env == "development"
    auth.install(app, settings)
    install_error_pages(app)

    def answer_context() -> tuple[Runtime, RateLimiter]:
        rt = app.state.runtime or Runtime.current()
        return rt, rt.limiter

    # Added before SecurityHeaders, so inside it: its answers carry the same headers as every other.
    app.add_middleware(answer_batches.AnswerFastPath, batcher=answer_batches.AnswerBatcher(answer_context))
    app.add_middleware(SecurityHeaders, https=settings.base_url.startswith("https://"))
    app.mount("/static", StaticFiles(directory=str(project_dir("templates") / "web" / "static")), "static")
    app.include_router(event_routes.router)  # first: /events/new must match before any /events/{slug}
    app.include_router(organiser_routes.router)
    app.include_router(api.router)
    app.include_router(events_api.router)
    app.include_router(rsvps_api.router)
    app.include_router(held_api.router)
    app.include_router(registration_routes.router)
    app.include_router(mail_routes.router)
    app.include_router(mail_routes.preview_router)
    app.include_router(reminder_routes.router)
    app.include_router(send_routes.router)
    app.include_router(dashboard_routes.router)
    app.include_router(sends_api.router)
    app.include_router(ops_routes.router)
    pages = templates

    def page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
        return pages.TemplateResponse(request, name, context, status_code=status_code)

    def not_found(request: Request) -> HTMLResponse:
        return page(request, "not_found.html", {"lang": "nl"}, status_code=404)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

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
            # When this page was served, signed: a press says how long after it came (invites.evidence).
            "served": evidence.page_stamp(settings.secret_key, token, now, flagged),
            # A press that was held: the page asks for it once more, the one extra step without scripts.
            "held": held,
            # Someone reading a forwarded link may sign up as themselves, never answer as the invitee.
            "forward_url": f"/e/{view.event.slug}/register?via={token}"
            if registration.allows_forwarded(view.event)
            else "",
        }

    @app.api_route(
        "/r/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False
    )
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
            opened = rsvp.log_open(
                session, view.invitation, request.headers.get("user-agent", ""), datetime.now(UTC)
            )
            flagged = opened.likely_scanner
            session.commit()
        language = lang if lang in ("nl", "en") else (view.recipient.language or view.event.language)
        context = rsvp_context(view, token, language, answer, bool(saved), flagged=flagged)
        return page(request, "rsvp.html", context)

    def answer_from_form(request: Request, token: str, rt: Runtime, form: dict[str, str]) -> Response:
        # A request the batch passed on (answer_batches.py) was counted there: only render its verdict.
        verdict = request.scope.get(answer_batches.VERDICT)
        if verdict == Verdict.LIMITED or (
            verdict is None
            and not rt.limiter.allow_rsvp(request.client.host if request.client else "?", token)
        ):
            return too_many(request)
        with rt.sessions() as session:
            try:
                view = rsvp.find_by_token(session, rt.settings.secret_key, token)
            except NotFound:
                return not_found(request)
            lang = form.get("lang", "")
            language = lang if lang in ("nl", "en") else (view.recipient.language or view.event.language)
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
                    context = rsvp_context(view, token, language, answer.answer, held=answer)
                    return page(request, "rsvp.html", context, status_code=202)
            except InputError as exc:
                session.rollback()
                view = rsvp.find_by_token(session, rt.settings.secret_key, token)
                context = rsvp_context(
                    view, token, language, answer.answer, error=str(exc), form=answer.responses
                )
                return page(request, "rsvp.html", context, status_code=400)
        suffix = f"&lang={lang}" if lang in ("nl", "en") else ""
        return RedirectResponse(f"/r/{token}?saved=1{suffix}", status_code=303)

    @app.post("/r/{token}", response_class=HTMLResponse, response_model=None)
    async def rsvp_answer(request: Request, token: str, rt: RuntimeDep) -> Response:
        form = await request.form()
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        # The rate limit waits on Redis like the answer waits on the database: both go to the thread pool
        # in one trip, so this process's event loop never blocks on either.
        return await run_in_threadpool(answer_from_form, request, token, rt, fields)

    @app.get("/r/{token}/invite.ics")
    def rsvp_ics(token: str, session: SessionDep, rt: RuntimeDep) -> Response:
        try:
            view = rsvp.find_by_token(session, rt.settings.secret_key, token)
        except NotFound:
            return Response("Niet gevonden", status_code=404, media_type="text/plain; charset=utf-8")
        composer = Composer(
            view.event,
            "invitation",
            rt.templates,
            sender=rt.settings.sender,
            base_url=rt.settings.base_url,
            secret=rt.settings.secret_key,
            now=datetime.now(UTC),
        )
        data = composer.calendar(view.recipient, view.invitation, view.recipient.language) or b""
        return Response(
            data,
            media_type="text/calendar; charset=utf-8; method=REQUEST",
            headers={"Content-Disposition": 'attachment; filename="invite.ics"'},
        )

    return app
