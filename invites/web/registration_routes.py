"""The public "Aanmelden" page: a form, a honeypot, rate limits, and a mail to confirm (double opt-in)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from invites.adapters.ratelimit import Limit
from invites.db.models import Event
from invites.domain.errors import InputError, NotFound
from invites.domain.reference import Municipalities, roles
from invites.services import registration
from invites.services.events import get_event
from invites.web.deps import RuntimeDep, SessionDep
from invites.web.pages import templates as pages

router = APIRouter(tags=["registration"])
# A person registers once or twice; a bot tries many times.
REGISTER = Limit("register", 10, 3600)


def _context(event: Event, places: Municipalities, now: datetime, via: str, **extra: Any) -> dict[str, Any]:
    day = event.starts_at.date()
    return {
        "lang": "nl",
        "event": event,
        "state": "open"
        if via and registration.allows_forwarded(event)
        else registration.registration_state(event, now),
        "via": via,
        "roles": [role for role in roles().values() if role.key != "other"],
        "municipalities": sorted(m.name for m in places.existing_on(day)),
        "form": {},
        "error": "",
        **extra,
    }


@router.get("/e/{slug}/register", response_class=HTMLResponse)
def register_page(
    request: Request, slug: str, session: SessionDep, runtime: RuntimeDep, via: str = ""
) -> HTMLResponse:
    try:
        event = get_event(session, slug)
    except NotFound:
        return pages.TemplateResponse(request, "not_found.html", {"lang": "nl"}, status_code=404)
    return pages.TemplateResponse(
        request, "register.html", _context(event, runtime.municipalities, datetime.now(UTC), via)
    )


@router.post("/e/{slug}/register", response_class=HTMLResponse)
def register_submit(
    request: Request,
    slug: str,
    session: SessionDep,
    runtime: RuntimeDep,
    name: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "",
    municipality: Annotated[str, Form()] = "",
    organisation: Annotated[str, Form()] = "",
    website: Annotated[str, Form()] = "",
    via: Annotated[str, Form()] = "",
) -> HTMLResponse:
    now = datetime.now(UTC)
    try:
        event = get_event(session, slug)
    except NotFound:
        return pages.TemplateResponse(request, "not_found.html", {"lang": "nl"}, status_code=404)
    client = request.client.host if request.client else "?"
    if not runtime.limiter.allow(REGISTER, f"{client}:{event.ics_uid}"):
        context = _context(
            event,
            runtime.municipalities,
            now,
            via,
            error="U hebt zich te vaak aangemeld. Probeer het later opnieuw.",
        )
        return pages.TemplateResponse(request, "register.html", context, status_code=429)
    form = registration.RegistrationForm(name, email, role, municipality, organisation, "nl", website)
    # The use case writes in a session of its own: end this request's read first (on SQLite an open read
    # would hold up its write).
    session.rollback()
    try:
        registration.register_and_mail(
            runtime.sessions,
            runtime.settings,
            slug,
            form,
            now,
            runtime.enqueue,
            via=via,
            places=runtime.municipalities,
        )
    except InputError as exc:
        context = _context(event, runtime.municipalities, now, via, error=str(exc), form=form.__dict__)
        return pages.TemplateResponse(request, "register.html", context, status_code=400)
    # The same words for a person, a bot caught by the honeypot, and a suppressed address.
    return pages.TemplateResponse(request, "registered.html", {"lang": "nl", "event": event})
