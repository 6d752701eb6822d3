"""The event form of the organiser pages, as plain data: no I/O.

The form's fields become the same tables an event file gives, and are checked by the same code
(`invites.domain.eventfile.event_spec`), so a form and a file can never disagree on what an event may be. The
other way round, an event becomes those tables again: the edit form shows some of them, and keeps the rest
(the programme, the series, the RSVP questions) as they were.
"""

from __future__ import annotations

import copy
import re
import unicodedata
from collections.abc import Mapping
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from invites.domain.errors import InputError
from invites.domain.eventfile import EventSpec, event_spec

if TYPE_CHECKING:
    from invites.db.models import Event

SOURCE = "form"
# Each form field and where it sits in an event file: a top-level key, or a key of a table.
PATHS: dict[str, tuple[str, ...]] = {
    "title": ("title",),
    "slug": ("slug",),
    "date": ("date",),
    "start": ("start",),
    "end": ("end",),
    "timezone": ("timezone",),
    "language": ("language",),
    "venue_name": ("venue", "name"),
    "venue_address": ("venue", "address"),
    "venue_postcode": ("venue", "postcode"),
    "venue_city": ("venue", "city"),
    "description": ("description",),
    "organiser_name": ("organiser", "name"),
    "organiser_email": ("organiser", "email"),
    "capacity": ("capacity",),
    "rsvp_deadline": ("rsvp_deadline",),
}
FIELDS = tuple(PATHS)
BY_PATH = {".".join(path): name for name, path in PATHS.items()}
DEFAULTS = {"timezone": "Europe/Amsterdam", "language": "nl"}
# Fields that an event file may leave out (or must not leave out) rather than hold as empty text.
NOT_TEXT = ("date", "start", "end", "capacity", "rsvp_deadline")
SLUG_LENGTH = 80
_ERROR = re.compile(rf"{SOURCE}: field '([^']+)': (.*)", re.DOTALL)


class FormError(InputError):
    """A form field that cannot be used; `field` is its name in the form ("" when the form does not show
    it, say a programme item kept from the event file)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def slug_for(title: str) -> str:
    """A slug made from a title: "Raadsavond Zeist 2025" becomes "raadsavond-zeist-2025"."""
    bare = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", bare).strip("-")
    if len(slug) > SLUG_LENGTH:
        slug = slug[:SLUG_LENGTH].rsplit("-", 1)[0] if "-" in slug[:SLUG_LENGTH] else slug[:SLUG_LENGTH]
    return slug


def spec_from_form(form: Mapping[str, str], base: dict[str, Any] | None = None) -> EventSpec:
    """The event the form describes, checked exactly as an event file is.

    `base` is the edited event's tables (`event_tables`): what the form does not show is kept from them, and
    so is the slug, which names the event. Raises FormError naming the field and the reason.
    """
    values = {name: str(form.get(name) or "").replace("\r\n", "\n").strip() for name in FIELDS}
    raw = copy.deepcopy(base) if base is not None else {}
    if base is None:
        if not values["title"]:
            # The slug is made from the title, so the title is asked for first.
            raise FormError("title", "field 'title': is required")
        values["slug"] = values["slug"] or slug_for(values["title"])
        if not values["slug"]:
            raise FormError("slug", "field 'slug': cannot be made from this title; fill one in")
    else:
        values["slug"] = str(base.get("slug", ""))
    for name in FIELDS:
        _put(raw, PATHS[name], _value(name, values[name]))
    try:
        return event_spec(raw, SOURCE)
    except InputError as exc:
        raise form_error(exc) from None


def form_error(exc: InputError) -> FormError:
    """The form field an event-file error is about, with the message the form shows."""
    found = _ERROR.fullmatch(str(exc))
    if found is None:
        return FormError("", str(exc).removeprefix(f"{SOURCE}: "))
    return FormError(BY_PATH.get(found[1], ""), f"field '{found[1]}': {found[2]}")


def _value(name: str, text: str) -> Any:
    """A form field's text as the value an event file would hold (None: left out)."""
    if not text:
        return DEFAULTS.get(name, None if name in NOT_TEXT else "")
    if name == "date":
        return _day(text)
    if name == "capacity":
        try:
            return int(text)
        except ValueError:
            raise FormError(name, f"field 'capacity': {text!r} is not a whole number") from None
    if name == "rsvp_deadline":
        try:
            return datetime.fromisoformat(text.replace(" ", "T", 1))
        except ValueError:
            raise FormError(
                name, f"field 'rsvp_deadline': {text!r} is not a date and time (YYYY-MM-DD HH:MM)"
            ) from None
    return text


def _day(text: str) -> date:
    # A browser without a date picker sends what was typed; Dutch people type 13-02-2018.
    for pattern in ("%Y-%m-%d", "%d-%m-%Y", "%d/%m/%Y"):
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    raise FormError("date", f"field 'date': {text!r} is not a date (YYYY-MM-DD)")


def _put(raw: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    table = raw
    for key in path[:-1]:
        table = table.setdefault(key, {})
    if value is None:
        table.pop(path[-1], None)
    else:
        table[path[-1]] = value


def event_tables(event: Event) -> dict[str, Any]:
    """The event as the tables its event file would give, so that `event_spec` of them is the event again
    (its reminder rules aside: they are left as they are)."""
    zone = ZoneInfo(event.timezone)
    start, end = event.starts_at.astimezone(zone), event.ends_at.astimezone(zone)
    extra = copy.deepcopy(event.extra or {})
    rsvp, registration_extra = extra.pop("rsvp", None), extra.pop("registration", {})
    # What the file said that has no column yet was kept whole in `extra`: it goes back where it came from.
    raw: dict[str, Any] = {
        **extra,
        "slug": event.slug,
        "title": event.title,
        "subtitle": event.subtitle,
        "description": event.description,
        "language": event.language,
        "timezone": event.timezone,
        "date": start.date(),
        "start": start.time(),
        "end": end.time(),
        "venue": _present(
            name=event.venue_name,
            address=event.venue_address,
            postcode=event.venue_postcode,
            city=event.venue_city,
            lat=event.venue_lat,
            lon=event.venue_lon,
        ),
        "audience": {"description": event.audience_description, "roles": list(event.audience_roles)},
        "organiser": {
            "name": event.organiser_name,
            "email": event.organiser_email,
            "partners": list(event.partners),
        },
        "registration": _registration_table(event, zone, registration_extra),
        "programme": _programme_tables(event, zone),
    }
    _put_optional_tables(raw, event, zone, rsvp)
    return raw


def _registration_table(event: Event, zone: ZoneInfo, registration_extra: dict[str, Any]) -> dict[str, Any]:
    return _present(
        enabled=event.registration_enabled,
        price=event.price,
        opens=event.registration_opens_at.astimezone(zone) if event.registration_opens_at else None,
        # Closing when the meeting starts is the default, and should follow the start when it moves.
        closes=event.registration_closes_at.astimezone(zone)
        if event.registration_closes_at and event.registration_closes_at != event.starts_at
        else None,
        **registration_extra,
    )


def _programme_tables(event: Event, zone: ZoneInfo) -> list[dict[str, Any]]:
    return [
        _present(
            start=item.starts_at.astimezone(zone).time(),
            end=item.ends_at.astimezone(zone).time(),
            title=item.title,
            speaker=item.speaker,
            organisation=item.organisation,
        )
        for item in event.programme
    ]


def _put_optional_tables(raw: dict[str, Any], event: Event, zone: ZoneInfo, rsvp: Any) -> None:
    """Add to `raw` the fields an event file may leave out, where the event has them."""
    if event.walk_in_at:
        raw["walk_in"] = event.walk_in_at.astimezone(zone).time()
    if event.capacity is not None:
        raw["capacity"] = event.capacity
    if event.rsvp_deadline:
        raw["rsvp_deadline"] = event.rsvp_deadline.astimezone(zone)
    if rsvp is not None:
        raw["rsvp"] = rsvp
    if event.series is not None:
        raw["series"] = _present(
            slug=event.series.slug,
            title=event.series.title,
            position=event.series_position,
            predecessor=event.predecessor.slug if event.predecessor else None,
        )


def form_values(event: Event) -> dict[str, str]:
    """The edit form's fields, filled in with the event as it is."""
    raw = event_tables(event)
    values: dict[str, str] = {}
    for name, path in PATHS.items():
        value: Any = raw
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        values[name] = _text(value)
    return values


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.strftime("%H:%M")
    return str(value)


def _present(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}
