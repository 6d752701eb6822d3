"""Organiser pages that are not about one step of the work: the list of events, the printable check-in
list, and the development outbox (what the local SMTP sink received)."""

from __future__ import annotations

from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from invites.adapters.sink import stored_messages
from invites.db.models import Event
from invites.domain.errors import NotFound
from invites.domain.states import Answer
from invites.messages.rendering import event_context
from invites.readmodels.status import attendees, event_status
from invites.services.events import get_event
from invites.web.api_models import EventStatusModel, Slug, bearer, problems
from invites.web.auth import organiser_router
from invites.web.deps import RuntimeDep, SessionDep, get_runtime
from invites.web.pages import language, render
from invites.web.security import MESSAGE_CSP

router = organiser_router()


def not_found(request: Request) -> HTMLResponse:
    return render(request, "not_found.html", {}, status_code=404)


@router.get("/", response_class=HTMLResponse)
def index(request: Request, session: SessionDep) -> HTMLResponse:
    events = session.scalars(select(Event).order_by(Event.starts_at.desc())).all()
    lang = language(request)
    rows = [(event, event_context(event, lang), event_status(session, event)) for event in events]
    return render(request, "index.html", {"rows": rows})


@router.get("/events/{slug}/checkin", response_class=HTMLResponse)
def checkin(request: Request, slug: str, session: SessionDep) -> HTMLResponse:
    """A printable list of everyone coming, by surname, with a box to tick at the door."""
    try:
        event = get_event(session, slug)
    except NotFound:
        return not_found(request)
    people = [
        p
        for p in attendees(session, event, Answer.ACCEPTED, places=get_runtime(request).municipalities)
        if p["waitlist_position"] is None
    ]
    return render(
        request,
        "checkin.html",
        {"event": event, "info": event_context(event, language(request)), "people": people},
    )


@router.get(
    "/api/v1/events/{slug}/status", tags=["status"], responses=problems(404), dependencies=[Depends(bearer)]
)
def status_api(slug: Slug, session: SessionDep) -> EventStatusModel:
    """Live counts: invited, sent, queued, deferred, failed, and the answers."""
    try:
        event = get_event(session, slug)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    return EventStatusModel.model_validate(event_status(session, event))


def _message_path(rt: RuntimeDep, name: str) -> Path | None:
    """A message the sink stored, in development only; nothing outside its folder."""
    if rt.settings.env != "development" or "/" in name or "\\" in name or not name.endswith(".eml"):
        return None
    path = rt.settings.outbox_dir / name
    return path if path.is_file() else None


@router.get("/outbox", response_class=HTMLResponse)
def outbox(request: Request, rt: RuntimeDep) -> HTMLResponse:
    if rt.settings.env != "development":
        return not_found(request)
    files = stored_messages(rt.settings.outbox_dir)
    return render(
        request,
        "outbox.html",
        {"messages": [_summary(path) for path in reversed(files)], "directory": rt.settings.outbox_dir},
    )


@router.get("/outbox/{name}", response_class=HTMLResponse, response_model=None)
def outbox_message(request: Request, name: str, rt: RuntimeDep, raw: int = 0) -> Response:
    path = _message_path(rt, name)
    if path is None:
        return not_found(request)
    if raw:
        return Response(path.read_bytes(), media_type="text/plain; charset=utf-8")
    return render(request, "outbox_message.html", {"summary": _summary(path), "name": name})


@router.get("/outbox/{name}/html", response_model=None)
def outbox_message_html(request: Request, name: str, rt: RuntimeDep) -> Response:
    """The message's HTML part alone, for the sandboxed frame on the message page."""
    path = _message_path(rt, name)
    if path is None:
        return not_found(request)
    parsed = message_from_bytes(path.read_bytes(), policy=default)
    html = parsed.get_body(("html",)) if isinstance(parsed, EmailMessage) else None
    return HTMLResponse(html.get_content() if html else "", headers={"Content-Security-Policy": MESSAGE_CSP})


def _summary(path: Path) -> dict[str, Any]:
    headers = message_from_bytes(path.read_bytes(), policy=default)
    return {
        "name": path.name,
        "to": str(headers.get("To", "")),
        "subject": str(headers.get("Subject", "")),
        "date": str(headers.get("Date", "")),
        "message_id": str(headers.get("Message-ID", "")),
    }
