"""Use cases for events: load an event file, find an event."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from invites.db.models import Campaign, Event, Invitation, ProgrammeItem, Recipient, Series
from invites.domain.errors import InputError, NotFound
from invites.domain.eventfile import EventSpec
from invites.services.reminders import sync_rules

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


def find_invitee(session: Session, event: Event, address: str) -> tuple[Recipient, Invitation]:
    """The person invited to the event under this address (any case), with their invitation."""
    row = session.execute(
        select(Recipient, Invitation)
        .join(Invitation, Invitation.recipient_id == Recipient.id)
        .where(Invitation.event_id == event.id, Recipient.email_key == address.strip().casefold())
    ).first()
    if row is None:
        raise NotFound(f"{address} is not invited to {event.slug}")
    return row[0], row[1]


def load_event(session: Session, spec: EventSpec, now: datetime) -> LoadResult:
    """Create the event from its definition, or update it in place.

    A change of time or venue raises the event's SEQUENCE and records which fields changed, so an update
    can be sent: the changes since the last invitation or update went out. The event's reminder rules are
    saved by name (a new event without any gets the default two). The caller commits.
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
        _raise_sequence(session, event, changes)
    event.updated_at = now
    event.series = _series(session, spec) if spec.series else None
    event.series_position = spec.series.position if spec.series else None
    _rewrite_programme(event, spec)
    if spec.series and (spec.series.previous_date or spec.series.previous_title):
        event.extra = {
            **event.extra,
            "previous_meeting": {
                "date": spec.series.previous_date.isoformat() if spec.series.previous_date else "",
                "title": spec.series.previous_title,
            },
        }
    if spec.series and spec.series.predecessor:
        _link_predecessor(session, event, spec.series.predecessor)
    session.flush()
    sync_rules(session, event, spec.reminders, now)
    return LoadResult(event, created, changes)


def _raise_sequence(session: Session, event: Event, changes: tuple[str, ...]) -> None:
    """Raise the event's SEQUENCE, and record the fields changed since the last invitation or update."""
    # What went out at the current sequence told everyone the earlier changes already.
    announced = session.scalar(
        select(Campaign.id)
        .where(
            Campaign.event_id == event.id,
            Campaign.kind.in_(("invitation", "update")),
            Campaign.sequence == event.sequence,
        )
        .limit(1)
    )
    earlier = set() if announced else set(event.changed_fields)
    event.sequence += 1
    event.changed_fields = sorted(earlier | set(changes))


def _rewrite_programme(event: Event, spec: EventSpec) -> None:
    """Make the event's programme items the definition's."""
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


def _link_predecessor(session: Session, event: Event, slug: str) -> None:
    """The earlier meeting of the series, by slug: its attendees are a segment (attended_previous), and
    the templates can name it (`event.previous_meeting`) when the file does not describe it itself."""
    earlier = session.scalar(select(Event).where(Event.slug == slug))
    if earlier is None or earlier.id == event.id:
        raise InputError(f"field 'series.predecessor': no earlier event with slug {slug!r}; load it first")
    event.predecessor_id = earlier.id
    if "previous_meeting" not in event.extra:
        day = earlier.starts_at.astimezone(ZoneInfo(earlier.timezone)).date()
        event.extra = {**event.extra, "previous_meeting": {"date": day.isoformat(), "title": earlier.title}}


def _series(session: Session, spec: EventSpec) -> Series:
    if spec.series is None:
        raise ValueError("the event names no series")
    series = session.scalar(select(Series).where(Series.slug == spec.series.slug))
    if series is None:
        series = Series(slug=spec.series.slug, title=spec.series.title)
        session.add(series)
    series.title = spec.series.title
    return series
