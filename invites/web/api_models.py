"""The shapes of the JSON API under /api/v1: what each route takes and returns, so /openapi.json (and the
docs at /docs) describe the real responses. The routes fill them from the services' results."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Path
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field, WithJsonSchema

from invites.db.models import Event

# The slug pattern of event files (invites.domain.eventfile.SLUG); anything else names no event.
SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
# PostgreSQL stores no NUL character in text: such input is refused at the door, never at the database.
NO_NUL = r"^[^\x00]*$"
ANSWERS = ("accepted", "declined", "tentative")

Slug = Annotated[
    str,
    Path(
        pattern=SLUG_PATTERN,
        max_length=120,
        description="the event's slug",
        examples=["lokaal-samenspel-2018"],
    ),
]
# Declared for the docs: it puts the "Authorize" button on /docs. The check itself is the organiser router's.
bearer = HTTPBearer(auto_error=False, description="an API token from `invites user token EMAIL`")


class Problem(BaseModel):
    """What every refusal says: the reason, for people."""

    detail: str


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented error responses of a route; every /api/v1 route may answer 401 without a token."""
    text = {
        400: "the input is wrong; `detail` names what and why",
        401: "no API token, or one that is not valid",
        404: "no such event (or other thing named in the path)",
        409: "the request conflicts with the current state",
        413: "the upload is over the size limit",
        415: "the body is not of a media type this route reads",
    }
    return {code: {"model": Problem, "description": text[code]} for code in (401, *codes)}


def local(moment: datetime | None, event: Event) -> datetime | None:
    """A moment in the event's own time zone, as organisers read it."""
    return moment.astimezone(ZoneInfo(event.timezone)) if moment else None


# --- Events -------------------------------------------------------------------------------------------------


class EventCounts(BaseModel):
    invited: int
    sent: int
    failed: int
    accepted: int
    declined: int
    tentative: int
    no_answer: int
    waitlisted: int


class EventSummary(BaseModel):
    slug: str
    title: str
    starts_at: datetime
    ends_at: datetime
    location: str = Field(description="the venue and its town")
    status: str = Field(description="draft, published or cancelled")
    counts: EventCounts


class Venue(BaseModel):
    name: str
    address: str
    postcode: str
    city: str
    lat: float | None
    lon: float | None


class ProgrammeEntry(BaseModel):
    starts_at: datetime
    ends_at: datetime
    title: str
    speaker: str
    organisation: str


class RegistrationWindow(BaseModel):
    enabled: bool = Field(description="whether the public sign-up page is open to people not invited")
    opens_at: datetime | None
    closes_at: datetime | None


class SeriesInfo(BaseModel):
    slug: str
    title: str
    position: int | None


class EventDetail(BaseModel):
    slug: str
    title: str
    subtitle: str
    description: str
    language: str
    timezone: str
    starts_at: datetime
    ends_at: datetime
    walk_in_at: datetime | None
    venue: Venue
    status: str = Field(description="draft, published or cancelled")
    cancel_reason: str
    sequence: int = Field(description="the calendar SEQUENCE: raised by every change of time or venue")
    capacity: int | None = Field(description="places, guests included; null is no limit")
    places_taken: int
    price: str
    rsvp_deadline: datetime | None
    registration: RegistrationWindow
    organiser_name: str
    organiser_email: str
    series: SeriesInfo | None
    programme: list[ProgrammeEntry]
    counts: EventCounts


class EventLoaded(BaseModel):
    slug: str
    created: bool = Field(description="true for a new event, false for an update of one loaded before")
    sequence: int
    calendar_changes: list[str] = Field(
        description="fields whose change calendars must see (time, venue); they raised the sequence"
    )
    url: str


class CancelBody(BaseModel):
    reason: str = Field(
        "", max_length=2000, pattern=NO_NUL, description="why; the cancellation and the RSVP page say it"
    )


class EventCancelled(BaseModel):
    slug: str
    status: str
    sequence: int
    campaign: int = Field(description="the id of the cancellation campaign")
    cancellations: int = Field(description="people who had the meeting and are sent the cancellation")
    enqueued: int = Field(description="cancellations handed to the workers now")
    stopped: int = Field(description="unsent messages of the event that will now never go out")


# --- RSVPs --------------------------------------------------------------------------------------------------

AnswerText = Annotated[str, WithJsonSchema({"type": "string", "enum": list(ANSWERS)})]


class Rsvp(BaseModel):
    email: str
    name: str
    answer: str | None = Field(description="accepted, declined, tentative, or null for no answer yet")
    guests: int
    responses: dict[str, Any] = Field(description="the answers to the event's questions, by key")
    waitlist_position: int | None = Field(description="the place on the waiting list, null when not on it")
    answered_at: datetime | None
    pending: bool = Field(description="a public registration still waiting for its e-mail confirmation")


class RsvpPage(BaseModel):
    event: str
    total: int = Field(description="how many invitations match the filter, on all pages")
    limit: int
    offset: int
    items: list[Rsvp]


class HistoryEntry(BaseModel):
    answer: str
    at: datetime
    source: str = Field(description="web, calendar, organiser, registration or waitlist")
    user_agent: str
    detail: dict[str, Any] = Field(description="guests, responses and waiting-list place as recorded")


class RsvpHistory(BaseModel):
    event: str
    email: str
    answer: str | None
    history: list[HistoryEntry]


class RsvpBody(BaseModel):
    answer: AnswerText = Field(description="accepted, declined or tentative")
    guests: int | None = Field(None, ge=0, description="guests they bring; left out keeps what they had")
    responses: dict[str, Annotated[str, Field(max_length=1000, pattern=NO_NUL)]] | None = Field(
        None, description="answers to the event's questions by key; left out keeps what they had"
    )


class RsvpRecorded(Rsvp):
    changed: bool = Field(description="false when the answer, guests and responses were already these")
    notices: int = Field(description="messages queued for the outbox: the confirmation, waiting-list news")


# --- Audience, status, imports (invites.web.api, organiser_routes) ---------------------------------------


class ImportQueued(BaseModel):
    job: int
    status: str
    url: str


class ImportStatus(BaseModel):
    job: int
    filename: str
    status: str = Field(description="queued, running, done or failed")
    rows_read: int | None = Field(None, description="while queued or running: rows read so far")
    report: dict[str, Any] | None = Field(None, description="when done: accepted, rejected rows, warnings")
    error: str | None = Field(None, description="when failed: why")


class SegmentModel(BaseModel):
    roles: list[str] = Field(default_factory=list, description="role keys")
    municipalities: list[str] = Field(default_factory=list, description="CBS codes (GM0344)")
    tags: list[str] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list, description="nl, en")
    attended_previous: bool = False


class Cell(BaseModel):
    invited: int
    accepted: int
    tentative: int
    declined: int


class CoverageRow(BaseModel):
    code: str
    name: str
    roles: dict[str, Cell]
    total: Cell


class Coverage(BaseModel):
    event: str
    segment: SegmentModel
    roles: list[str]
    municipalities: list[CoverageRow]
    totals: dict[str, Cell] = Field(description="per role, and `all`: the whole segment")
    nobody_accepted: list[str] = Field(description="municipalities nobody from has accepted")


class TimelineDay(BaseModel):
    day: str = Field(description="the local date, YYYY-MM-DD")
    accepted: int
    declined: int
    tentative: int


class Attendee(BaseModel):
    name: str
    email: str
    role: str
    municipality: str
    organisation: str
    answer: str | None
    guests: int
    waitlist_position: int | None
    responses: dict[str, Any]
    answered_at: str | None


class EventStatusModel(BaseModel):
    event: str
    title: str
    status: str
    sequence: int
    invited: int
    queued: int
    sent: int
    deferred: int
    failed: int
    accepted: int
    declined: int
    tentative: int
    no_answer: int
    waitlisted: int
    pending_registrations: int
    places_taken: int
    capacity: int | None
    opened: int
    opened_by_scanners: int
    held: int = Field(description="answers held as not clearly a person's, in none of the other counts")


# --- Reminders ------------------------------------------------------------------------------------------


class ReminderRule(BaseModel):
    id: int
    name: str
    when: str
    audience: list[str]
    template: str
    segment: dict[str, Any]
    enabled: bool
    scheduled_at: datetime | None = Field(description="when it is due; null when the rule cannot be used")
    send_from: datetime | None
    until: datetime | None
    state: str = Field(description="waiting, due, held, passed, disabled, cancelled, or error")
    error: str = Field("", description="why the rule cannot be used, or what the last sweep could not do")
    error_at: datetime | None = Field(None, description="when the last sweep failed on this rule")


class ReminderRules(BaseModel):
    event: str
    rules: list[ReminderRule]
