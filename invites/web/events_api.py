"""The JSON API for events: list them, read one, load an event file (create or update), cancel one.

Loading and cancelling call the same services as `invites event load` and `invites event cancel`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import Depends, HTTPException, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from invites import db
from invites.db.models import Event
from invites.domain.errors import InputError
from invites.domain.eventfile import parse_event_file
from invites.readmodels.status import event_status
from invites.runtime import Runtime
from invites.services.cancellation import cancel_event
from invites.services.events import get_event, load_event
from invites.web.api_models import (
    CancelBody,
    EventCancelled,
    EventCounts,
    EventDetail,
    EventLoaded,
    EventSummary,
    ProgrammeEntry,
    RegistrationWindow,
    SeriesInfo,
    Slug,
    Venue,
    bearer,
    local,
    problems,
)
from invites.web.auth import organiser_router
from invites.web.deps import RuntimeDep, SessionDep

router = organiser_router(prefix="/api/v1", tags=["events"], dependencies=[Depends(bearer)])

# An event file is a page or two of text; this is far above any real one.
MAX_EVENT_FILE = 256 * 1024
EVENT_FILE_TYPES = ("application/toml", "text/plain")
EVENT_FILE_BODY = {
    "requestBody": {
        "required": True,
        "description": "The event file, as in `invites event load FILE` (see examples/*.toml).",
        "content": {media: {"schema": {"type": "string"}} for media in EVENT_FILE_TYPES},
    }
}


def _summary(session: Session, event: Event) -> EventSummary:
    place = ", ".join(part for part in (event.venue_name, event.venue_city) if part)
    return EventSummary(
        slug=event.slug,
        title=event.title,
        starts_at=local(event.starts_at, event) or event.starts_at,
        ends_at=local(event.ends_at, event) or event.ends_at,
        location=place,
        status=event.status.value,
        counts=EventCounts.model_validate(event_status(session, event)),
    )


@router.get("/events", responses=problems())
def list_events(session: SessionDep) -> list[EventSummary]:
    """Every event, the latest first, with where it is and how the answers stand."""
    events = session.scalars(select(Event).order_by(Event.starts_at.desc(), Event.id)).all()
    return [_summary(session, event) for event in events]


@router.get("/events/{slug}", responses=problems(404))
def event_detail(slug: Slug, session: SessionDep) -> EventDetail:
    """One event as its file defined it, with its programme, capacity and registration window."""
    event = get_event(session, slug)
    status = event_status(session, event)
    return EventDetail(
        slug=event.slug,
        title=event.title,
        subtitle=event.subtitle,
        description=event.description,
        language=event.language,
        timezone=event.timezone,
        starts_at=local(event.starts_at, event) or event.starts_at,
        ends_at=local(event.ends_at, event) or event.ends_at,
        walk_in_at=local(event.walk_in_at, event),
        venue=Venue(
            name=event.venue_name,
            address=event.venue_address,
            postcode=event.venue_postcode,
            city=event.venue_city,
            lat=event.venue_lat,
            lon=event.venue_lon,
        ),
        status=event.status.value,
        cancel_reason=event.cancel_reason,
        sequence=event.sequence,
        capacity=event.capacity,
        places_taken=status["places_taken"],
        price=event.price,
        rsvp_deadline=local(event.rsvp_deadline, event),
        registration=RegistrationWindow(
            enabled=event.registration_enabled,
            opens_at=local(event.registration_opens_at, event),
            closes_at=local(event.registration_closes_at, event),
        ),
        organiser_name=event.organiser_name,
        organiser_email=event.organiser_email,
        series=SeriesInfo(slug=event.series.slug, title=event.series.title, position=event.series_position)
        if event.series
        else None,
        programme=[
            ProgrammeEntry(
                starts_at=local(item.starts_at, event) or item.starts_at,
                ends_at=local(item.ends_at, event) or item.ends_at,
                title=item.title,
                speaker=item.speaker,
                organisation=item.organisation,
            )
            for item in event.programme
        ],
        counts=EventCounts.model_validate(status),
    )


def _load(runtime: Runtime, data: bytes) -> EventLoaded:
    try:
        spec = parse_event_file(data, "event file", runtime.municipalities)
        with db.transaction(runtime.sessions) as session:
            result = load_event(session, spec, datetime.now(UTC))
            loaded = EventLoaded(
                slug=result.event.slug,
                created=result.created,
                sequence=result.event.sequence,
                calendar_changes=list(result.calendar_changes),
                url=f"/api/v1/events/{result.event.slug}",
            )
    except InputError as exc:
        raise HTTPException(400, str(exc)) from exc
    return loaded


@router.post(
    "/events",
    status_code=200,
    responses={201: {"model": EventLoaded, "description": "a new event"}, **problems(400, 413, 415)},
    openapi_extra=EVENT_FILE_BODY,
)
async def load_event_file(request: Request, response: Response, runtime: RuntimeDep) -> EventLoaded:
    """Create the event an event file (TOML) defines, or update the one with its slug.

    A change of time or venue raises the calendar sequence and is listed in `calendar_changes`; send an
    update afterwards so calendars move the meeting. A wrong file is refused with the field or line and why.
    """
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in EVENT_FILE_TYPES:
        raise HTTPException(415, f"send the event file as {' or '.join(EVENT_FILE_TYPES)}")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_EVENT_FILE:
            raise HTTPException(413, f"an event file is at most {MAX_EVENT_FILE:,} bytes")
    loaded = await run_in_threadpool(_load, runtime, bytes(data))
    if loaded.created:
        response.status_code = 201
        response.headers["Location"] = loaded.url
    return loaded


@router.post("/events/{slug}/cancel", responses=problems(400, 404))
def cancel(
    slug: Slug, session: SessionDep, runtime: RuntimeDep, body: CancelBody | None = None
) -> EventCancelled:
    """Cancel the event: every calendar that has it drops it (METHOD:CANCEL), and no reminder or other
    message goes out any more. Cancelling again only changes the reason."""
    get_event(session, slug)
    session.close()  # the cancellation locks the event row in its own transaction
    try:
        result = cancel_event(
            runtime.sessions,
            slug,
            body.reason if body else "",
            runtime.settings,
            runtime.templates,
            runtime.enqueue,
            datetime.now(UTC),
        )
    except InputError as exc:
        raise HTTPException(400, str(exc)) from exc
    event = get_event(session, slug)
    return EventCancelled(
        slug=slug,
        status=event.status.value,
        sequence=event.sequence,
        campaign=result.campaign.campaign_id,
        cancellations=result.campaign.total,
        enqueued=result.enqueued,
        stopped=result.stopped,
    )
