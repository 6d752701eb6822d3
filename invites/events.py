"""Use cases for events: load an event file, find an event."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from invites.errors import NotFound
from invites.eventfile import EventSpec
from invites.models import Event, ProgrammeItem, Series

# Changes that calendars must see: they raise the SEQUENCE so clients move the meeting.
CALENDAR_FIELDS = ("starts_at", "ends_at", "venue_name", "venue_address", "venue_city")
PLAIN_FIELDS = (
    "title",
    "subtitle",
    "description",
    "language",
    "timezone",
    "walk_in_at",
    "venue_postcode",
    "venue_lat",
    "venue_lon",
    "audience_description",
    "audience_roles",
    "organiser_name",
    "organiser_email",
    "partners",
    "capacity",
    "price",
    "registration_enabled",
    "registration_opens_at",
    "registration_closes_at",
    "rsvp_deadline",
    "extra",
)


@dataclass(frozen=True)
class LoadResult:
    event: Event
    created: bool
    calendar_changes: tuple[str, ...]


def get_event(session: Session, slug: str) -> Event:
    event = session.scalar(select(Event).where(Event.slug == slug))
    if event is None:
        raise NotFound(f"no event with slug {slug!r}")
    return event


def load_event(session: Session, spec: EventSpec, now: datetime) -> LoadResult:
    """Create the event from its definition, or update it in place.

    A change of time or venue raises the event's SEQUENCE and records which fields changed, so an update
    can be sent. The caller commits.
    """
    event = session.scalar(select(Event).where(Event.slug == spec.slug))
    created = event is None
    if event is None:
        event = Event(
            slug=spec.slug,
            ics_uid=f"{secrets.token_hex(12)}-{spec.slug}@invites",
            sequence=0,
            created_at=now,
            **{name: getattr(spec, name) for name in CALENDAR_FIELDS},
        )
        session.add(event)
    changes = tuple(
        name for name in CALENDAR_FIELDS if not created and getattr(event, name) != getattr(spec, name)
    )
    for name in CALENDAR_FIELDS + PLAIN_FIELDS:
        setattr(event, name, getattr(spec, name))
    if changes:
        event.sequence += 1
        event.changed_fields = sorted(set(event.changed_fields) | set(changes))
    event.updated_at = now
    event.series = _series(session, spec) if spec.series else None
    event.series_position = spec.series.position if spec.series else None
    # Items are rewritten in place: replacing them would insert before it deletes, and clash on position.
    for index, item in enumerate(spec.programme):
        if index < len(event.programme):
            row = event.programme[index]
        else:
            row = ProgrammeItem(position=index)
            event.programme.append(row)
        row.starts_at, row.ends_at = item.starts_at, item.ends_at
        row.title, row.speaker, row.organisation = item.title, item.speaker, item.organisation
    del event.programme[len(spec.programme) :]
    if spec.series and (spec.series.previous_date or spec.series.previous_title):
        event.extra = {
            **event.extra,
            "previous_meeting": {
                "date": spec.series.previous_date.isoformat() if spec.series.previous_date else "",
                "title": spec.series.previous_title,
            },
        }
    session.flush()
    return LoadResult(event, created, changes)


def _series(session: Session, spec: EventSpec) -> Series:
    if spec.series is None:
        raise ValueError("the event names no series")
    series = session.scalar(select(Series).where(Series.slug == spec.series.slug))
    if series is None:
        series = Series(slug=spec.series.slug, title=spec.series.title)
        session.add(series)
    series.title = spec.series.title
    return series
