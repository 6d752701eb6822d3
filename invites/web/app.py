"""The FastAPI app. Routes parse input, call a service, and present the result; nothing more."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.orm import Session

from invites import rsvp
from invites.compose import Composer
from invites.errors import InputError, NotFound
from invites.events import get_event
from invites.models import AnswerSource, Event
from invites.rendering import event_context
from invites.runtime import Runtime
from invites.settings import project_dir
from invites.sink import stored_messages
from invites.status import event_status

ANSWER_LABELS = {
    "nl": {"accepted": "Ja, ik kom", "tentative": "Misschien", "declined": "Nee, ik kan niet"},
    "en": {"accepted": "Yes, I will attend", "tentative": "Maybe", "declined": "No, I can't"},
}


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime | None = request.app.state.runtime
    return runtime or Runtime.current()


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(runtime: RuntimeDep) -> Iterator[Session]:
    with runtime.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def create_app(runtime: Runtime | None = None) -> FastAPI:
    """The app; with no runtime given, it builds this process's own from the settings on first request."""
    app = FastAPI(title="invites", version="0.1.0")
    app.state.runtime = runtime
    pages = Jinja2Templates(directory=str(project_dir("templates") / "web"))

    def page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
        return pages.TemplateResponse(request, name, context, status_code=status_code)

    def not_found(request: Request) -> HTMLResponse:
        return page(request, "not_found.html", {"lang": "nl"}, status_code=404)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request, session: SessionDep) -> HTMLResponse:
        events = session.scalars(select(Event).order_by(Event.starts_at.desc())).all()
        rows = [(event, event_status(session, event)) for event in events]
        return page(request, "index.html", {"rows": rows, "lang": "nl"})

    @app.get("/events/{slug}", response_class=HTMLResponse)
    def event_page(request: Request, slug: str, session: SessionDep) -> HTMLResponse:
        try:
            event = get_event(session, slug)
        except NotFound:
            return not_found(request)
        return page(
            request,
            "event.html",
            {
                "event": event,
                "info": event_context(event, "nl"),
                "status": event_status(session, event),
                "lang": "nl",
            },
        )

    @app.get("/api/v1/events/{slug}/status")
    def status_api(slug: str, session: SessionDep) -> JSONResponse:
        try:
            return JSONResponse(event_status(session, get_event(session, slug)))
        except NotFound as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.api_route("/r/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
    def rsvp_page(
        request: Request,
        token: str,
        session: SessionDep,
        rt: RuntimeDep,
        answer: str = "",
        lang: str = "",
        saved: int = 0,
    ) -> HTMLResponse:
        # Read-only: link scanners fetch this page, so nothing here may change any state.
        try:
            view = rsvp.find_by_token(session, rt.settings.secret_key, token)
        except NotFound:
            return not_found(request)
        language = lang if lang in ("nl", "en") else (view.recipient.language or view.event.language)
        return page(
            request,
            "rsvp.html",
            {
                "lang": language,
                "token": token,
                "event": event_context(view.event, language),
                "recipient": view.recipient,
                "current": view.invitation.answer.value if view.invitation.answer else "",
                "preselect": answer if answer in ANSWER_LABELS["nl"] else "",
                "labels": ANSWER_LABELS[language],
                "saved": bool(saved),
                "cancelled": view.event.status == "cancelled",
            },
        )

    @app.post("/r/{token}", response_class=HTMLResponse, response_model=None)
    def rsvp_answer(
        request: Request,
        token: str,
        session: SessionDep,
        rt: RuntimeDep,
        answer: Annotated[str, Form()],
        lang: Annotated[str, Form()] = "",
    ) -> Response:
        try:
            view = rsvp.find_by_token(session, rt.settings.secret_key, token)
            rsvp.record_answer(
                session,
                view.invitation,
                rsvp.parse_answer(answer),
                AnswerSource.WEB,
                datetime.now(UTC),
                request.headers.get("user-agent", ""),
            )
            session.commit()
        except NotFound:
            return not_found(request)
        except InputError as exc:
            session.rollback()
            return page(request, "error.html", {"lang": "nl", "message": str(exc)}, status_code=400)
        suffix = f"&lang={lang}" if lang in ("nl", "en") else ""
        return RedirectResponse(f"/r/{token}?saved=1{suffix}", status_code=303)

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

    @app.get("/outbox", response_class=HTMLResponse)
    def outbox(request: Request, rt: RuntimeDep) -> HTMLResponse:
        files = stored_messages(rt.settings.outbox_dir)
        return page(
            request,
            "outbox.html",
            {
                "messages": [_summary(path) for path in reversed(files)],
                "directory": rt.settings.outbox_dir,
                "lang": "nl",
            },
        )

    @app.get("/outbox/{name}", response_class=HTMLResponse, response_model=None)
    def outbox_message(request: Request, name: str, rt: RuntimeDep, raw: int = 0) -> Response:
        path = rt.settings.outbox_dir / name
        if "/" in name or not name.endswith(".eml") or not path.is_file():
            return not_found(request)
        data = path.read_bytes()
        if raw:
            return Response(data, media_type="text/plain; charset=utf-8")
        parsed = message_from_bytes(data, policy=default)
        html = parsed.get_body(("html",)) if isinstance(parsed, EmailMessage) else None
        return page(
            request,
            "outbox_message.html",
            {
                "summary": _summary(path),
                "html": html.get_content() if html else "",
                "name": name,
                "lang": "nl",
            },
        )

    return app


def _summary(path: Path) -> dict[str, str]:
    headers = message_from_bytes(path.read_bytes(), policy=default)
    return {
        "name": path.name,
        "to": str(headers.get("To", "")),
        "subject": str(headers.get("Subject", "")),
        "date": str(headers.get("Date", "")),
        "message_id": str(headers.get("Message-ID", "")),
    }
