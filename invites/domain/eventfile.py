"""Event definition files (TOML): parsed and checked into plain data, with no I/O beyond reading bytes."""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError

from invites.domain.audience import check_address
from invites.domain.errors import InputError
from invites.domain.reference import LANGUAGES, Municipalities
from invites.domain.rules import RuleError, RuleSpec


@dataclass(frozen=True)
class ProgrammeSpec:
    starts_at: datetime
    ends_at: datetime
    title: str
    speaker: str = ""
    organisation: str = ""


@dataclass(frozen=True)
class SeriesSpec:
    slug: str
    title: str
    position: int | None
    previous_date: date | None
    previous_title: str
    # The slug of the earlier meeting, when it is an event here too.
    predecessor: str = ""


@dataclass(frozen=True)
class EventSpec:
    slug: str
    title: str
    subtitle: str
    description: str
    language: str
    timezone: str
    starts_at: datetime
    ends_at: datetime
    walk_in_at: datetime | None
    venue_name: str
    venue_address: str
    venue_postcode: str
    venue_city: str
    venue_lat: float | None
    venue_lon: float | None
    audience_description: str
    audience_roles: list[str]
    organiser_name: str
    organiser_email: str
    partners: list[str]
    capacity: int | None
    price: str
    registration_enabled: bool
    registration_opens_at: datetime | None
    registration_closes_at: datetime | None
    rsvp_deadline: datetime | None
    series: SeriesSpec | None
    programme: list[ProgrammeSpec]
    extra: dict[str, Any] = field(default_factory=dict)
    # The [[reminders]] tables; None when the file has none (a new event then gets the default rules).
    reminders: tuple[RuleSpec, ...] | None = None


# /events/new is the form for a new event: an event with that slug could never be opened.
RESERVED_SLUGS = frozenset({"new"})
SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
KNOWN_TOP = {  # "rsvp" is checked here too, and kept in `extra` for the RSVP page
    "slug",
    "title",
    "subtitle",
    "description",
    "language",
    "timezone",
    "date",
    "start",
    "end",
    "walk_in",
    "capacity",
    "rsvp_deadline",
    "venue",
    "audience",
    "organiser",
    "registration",
    "series",
    "programme",
    "reminders",
}


class _Reader:
    """Reads fields out of one TOML table, naming the full path of a field in every error."""

    def __init__(self, source: str, table: dict[str, Any], path: str = "") -> None:
        self.source = source
        self.table = table
        self.path = path

    def _name(self, key: str) -> str:
        return f"{self.path}{key}"

    def fail(self, key: str, reason: str) -> InputError:
        return InputError(f"{self.source}: field '{self._name(key)}': {reason}")

    def text(self, key: str, default: str | None = None) -> str:
        value = self.table.get(key, default)
        if value is None:
            raise self.fail(key, "is required")
        if not isinstance(value, str):
            raise self.fail(key, f"must be text, not {type(value).__name__}")
        return value.strip()

    def optional(self, key: str, kind: type, label: str) -> Any:
        value = self.table.get(key)
        if value is None:
            return None
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(key, f"must be {label}")
        return value

    def time(self, key: str) -> dt.time:
        found = self.optional_time(key)
        if found is None:
            raise self.fail(key, "is required (HH:MM)")
        return found

    def optional_time(self, key: str) -> dt.time | None:
        value = self.table.get(key)
        if value is None:
            return None
        if isinstance(value, dt.time):
            return value
        if isinstance(value, str):
            try:
                return dt.time.fromisoformat(value.strip().replace(".", ":"))
            except ValueError:
                pass
        raise self.fail(key, f"{value!r} is not a time of day (HH:MM)")

    def local_datetime(self, key: str, zone: ZoneInfo) -> datetime | None:
        value = self.table.get(key)
        if value is None:
            return None
        if isinstance(value, date) and not isinstance(value, datetime):
            value = datetime.combine(value, dt.time(0, 0))
        if not isinstance(value, datetime):
            raise self.fail(key, f"{value!r} is not a date and time (YYYY-MM-DDTHH:MM:SS)")
        return value.replace(tzinfo=zone) if value.tzinfo is None else value

    def sub(self, key: str) -> _Reader:
        value = self.table.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table")
        return _Reader(self.source, value, f"{self.path}{key}.")


def parse_event_file(
    data: bytes, source: str = "event file", places: Municipalities | None = None
) -> EventSpec:
    """Parse an event definition; raises InputError naming the field and the reason. `places` is the list
    its reminders' municipalities are looked up in (the Runtime's; the bundled one when None)."""
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not UTF-8 text (byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{source}: not valid TOML: {exc}") from exc
    return event_spec(raw, source, places)


def event_spec(
    raw: dict[str, Any], source: str = "event file", places: Municipalities | None = None
) -> EventSpec:
    """Check an event definition already read into the tables TOML gives (the web form builds them too)."""
    # The fields are read in this order, so that a file with several mistakes always reports the same one.
    top = _Reader(source, raw)
    zone_name = top.text("timezone", "Europe/Amsterdam")
    zone = _read_zone(top, zone_name)
    day = _read_day(top)
    starts_at, ends_at, walk_in_at = _read_times(top, day, zone)
    slug = _read_slug(top)
    language = _read_language(top)
    capacity = _read_capacity(top)
    venue, audience, organiser = top.sub("venue"), top.sub("audience"), top.sub("organiser")
    registration = top.sub("registration")
    roles = _read_texts(audience, "roles", "must be a list of role keys")
    partners = _read_texts(organiser, "partners", "must be a list of names")
    series = _read_series(top) if "series" in raw else None
    programme = _read_programme(top, day, zone)
    extra = _read_extra(top, registration)
    return EventSpec(
        slug=slug,
        title=top.text("title"),
        subtitle=top.text("subtitle", ""),
        description=top.text("description", ""),
        language=language,
        timezone=zone_name,
        starts_at=starts_at,
        ends_at=ends_at,
        walk_in_at=walk_in_at,
        venue_name=venue.text("name", ""),
        venue_address=venue.text("address", ""),
        venue_postcode=venue.text("postcode", ""),
        venue_city=venue.text("city", ""),
        venue_lat=venue.optional("lat", float, "a number"),
        venue_lon=venue.optional("lon", float, "a number"),
        audience_description=audience.text("description", ""),
        audience_roles=roles,
        organiser_name=organiser.text("name", ""),
        organiser_email=_read_organiser_email(organiser),
        partners=partners,
        capacity=capacity,
        price=registration.text("price", ""),
        registration_enabled=bool(registration.optional("enabled", bool, "true or false")),
        registration_opens_at=registration.local_datetime("opens", zone),
        registration_closes_at=registration.local_datetime("closes", zone) or starts_at,
        rsvp_deadline=top.local_datetime("rsvp_deadline", zone),
        series=series,
        programme=programme,
        extra=extra,
        reminders=_reminders(source, raw, zone, places) if "reminders" in raw else None,
    )


def _read_zone(top: _Reader, zone_name: str) -> ZoneInfo:
    try:
        return ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise top.fail("timezone", f"{zone_name!r} is not an IANA time zone") from exc


def _read_day(top: _Reader) -> date:
    day = top.table.get("date")
    if not isinstance(day, date) or isinstance(day, datetime):
        raise top.fail("date", "is required, as YYYY-MM-DD")
    return day


def _on(day: date, moment: dt.time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, moment, tzinfo=zone)


def _read_times(top: _Reader, day: date, zone: ZoneInfo) -> tuple[datetime, datetime, datetime | None]:
    """The start, the end and the walk-in (None without one) on the event's day."""
    start, end = top.time("start"), top.time("end")
    starts_at, ends_at = _on(day, start, zone), _on(day, end, zone)
    if ends_at <= starts_at:
        raise top.fail("end", f"{end:%H:%M} is not after the start {start:%H:%M}")
    walk_in = top.optional_time("walk_in")
    walk_in_at = _on(day, walk_in, zone) if walk_in else None
    if walk_in_at and walk_in_at > starts_at:
        raise top.fail("walk_in", "is after the start")
    return starts_at, ends_at, walk_in_at


def _read_slug(top: _Reader) -> str:
    slug = top.text("slug")
    if not SLUG.fullmatch(slug):
        raise top.fail("slug", f"{slug!r} must be lower-case letters a-z, digits and inner hyphens")
    if slug in RESERVED_SLUGS:
        raise top.fail(
            "slug", f"{slug!r} is the address of a page of its own (/events/{slug}); choose another"
        )
    return slug


def _read_language(top: _Reader) -> str:
    language = top.text("language", "nl")
    if language not in LANGUAGES:
        raise top.fail("language", f"{language!r} is not one of nl, en")
    return language


def _read_capacity(top: _Reader) -> int | None:
    capacity: int | None = top.optional("capacity", int, "a whole number")
    if capacity is not None and capacity < 1:
        raise top.fail("capacity", "must be at least 1")
    return capacity


def _read_organiser_email(organiser: _Reader) -> str:
    """The organiser's address ("" without one): it becomes the calendar's ORGANIZER, so it must be one
    plain address on one line, checked by email-validator as every address of a list is."""
    email = organiser.text("email", "")
    if not email:
        return ""
    if any(ord(char) < 32 or ord(char) == 127 for char in email):
        raise organiser.fail(
            "email", "must be one address on one line, with no line breaks or control characters"
        )
    try:
        check_address(email)
    except EmailNotValidError as exc:
        raise organiser.fail("email", f"{email!r} is not an e-mail address: {exc}") from None
    return email


def _read_texts(table: _Reader, key: str, reason: str) -> list[str]:
    """A list of texts, empty when the table leaves it out."""
    value = table.table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(each, str) for each in value):
        raise table.fail(key, reason)
    return list(value)


def _read_series(top: _Reader) -> SeriesSpec:
    """The [series] table, with the earlier meeting in [series.previous]."""
    s = top.sub("series")
    previous = s.sub("previous")
    previous_date = previous.table.get("date")
    if previous_date is not None and not isinstance(previous_date, date):
        raise previous.fail("date", "must be a date, YYYY-MM-DD")
    return SeriesSpec(
        slug=s.text("slug"),
        title=s.text("title"),
        position=s.optional("position", int, "a whole number"),
        previous_date=previous_date,
        previous_title=previous.text("title", ""),
        predecessor=s.text("predecessor", ""),
    )


def _read_programme(top: _Reader, day: date, zone: ZoneInfo) -> list[ProgrammeSpec]:
    """The [[programme]] tables, each with a start and an end on the event's day."""
    items = top.table.get("programme", [])
    if not isinstance(items, list):
        raise top.fail("programme", "must be a list of [[programme]] tables")
    programme = []
    for index, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise top.fail("programme", f"item {index} must be a table")
        reader = _Reader(top.source, item, f"programme[{index}].")
        item_start, item_end = reader.time("start"), reader.time("end")
        if _on(day, item_end, zone) <= _on(day, item_start, zone):
            raise reader.fail("end", "is not after its start")
        programme.append(
            ProgrammeSpec(
                starts_at=_on(day, item_start, zone),
                ends_at=_on(day, item_end, zone),
                title=reader.text("title"),
                speaker=reader.text("speaker", ""),
                organisation=reader.text("organisation", ""),
            )
        )
    return programme


def _read_extra(top: _Reader, registration: _Reader) -> dict[str, Any]:
    """What has no column of its own: unknown top-level keys kept whole, the checked [rsvp] options, and
    whether a forwarded link may register."""
    raw = top.table
    extra = {k: v for k, v in raw.items() if k not in KNOWN_TOP}
    if "rsvp" in raw:
        extra["rsvp"] = _rsvp_options(top.sub("rsvp"))
    # May someone who got a forwarded personal link sign up as themselves (never as the invitee)?
    if "allow_forwarded" in registration.table:
        extra["registration"] = {
            "allow_forwarded": bool(registration.optional("allow_forwarded", bool, "true or false"))
        }
    return extra


def _reminders(
    source: str, raw: dict[str, Any], zone: ZoneInfo, places: Municipalities | None
) -> tuple[RuleSpec, ...]:
    """The [[reminders]] tables: name, when ("-7d 10:00" or a local date and time), audience, template,
    and optionally a segment (roles, municipalities, tags, languages, attended_previous)."""
    items = raw["reminders"]
    if not isinstance(items, list):
        raise _Reader(source, raw).fail("reminders", "must be a list of [[reminders]] tables")
    rules: list[RuleSpec] = []
    for index, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise _Reader(source, raw).fail("reminders", f"item {index} must be a table")
        reader = _Reader(source, item, f"reminders[{index}].")
        when, audience, segment = _check_reminder(reader)
        name = reader.text("name")
        try:
            rules.append(
                RuleSpec.parse(
                    name,
                    when if isinstance(when, datetime) else str(when),
                    audience,
                    reader.text("template", "reminder"),
                    segment,
                    bool(reader.optional("enabled", bool, "true or false") is not False),
                    zone,
                    places,
                )
            )
        except RuleError as exc:
            raise reader.fail(exc.field, str(exc)) from None
        if name in (rule.name for rule in rules[:-1]):
            raise reader.fail("name", f"{name!r} is used by an earlier reminder")
    return tuple(rules)


def _check_reminder(reader: _Reader) -> tuple[Any, str | list[str], dict[str, Any]]:
    """One [[reminders]] table's `when`, `audience` and segment, as the table holds them once they are of
    the right kinds; RuleSpec.parse checks what they say."""
    item = reader.table
    when = item.get("when")
    if when is None:
        raise reader.fail("when", "is required: an offset such as '-7d 10:00', or a date and time")
    if isinstance(when, dt.date) and not isinstance(when, datetime):
        raise reader.fail("when", "needs a time of day too")
    audience = item.get("audience")
    if not isinstance(audience, str) and not (
        isinstance(audience, list) and all(isinstance(a, str) for a in audience)
    ):
        raise reader.fail("audience", "is required: a name such as 'no-answer', or a list of names")
    segment = {key: item[key] for key in SEGMENT_KEYS if key in item}
    for key, value in segment.items():
        if key != "attended_previous" and (
            not isinstance(value, list) or not all(isinstance(v, str) for v in value)
        ):
            raise reader.fail(key, "must be a list of texts")
    return when, audience, segment


SEGMENT_KEYS = ("roles", "municipalities", "tags", "languages", "attended_previous")


QUESTION_TYPES = ("text", "choice", "yesno", "number")


def _rsvp_options(rsvp: _Reader) -> dict[str, Any]:
    """The [rsvp] table: guests allowed, the standard questions asked, and custom [[rsvp.questions]]."""
    max_guests = rsvp.optional("max_guests", int, "a whole number")
    if max_guests is not None and not 0 <= max_guests <= 20:
        raise rsvp.fail("max_guests", "must be between 0 and 20")
    options: dict[str, Any] = {"max_guests": max_guests or 0}
    for flag in ("dietary", "accessibility", "remark"):
        options[flag] = bool(rsvp.optional(flag, bool, "true or false"))
    questions = rsvp.table.get("questions", [])
    if not isinstance(questions, list):
        raise rsvp.fail("questions", "must be a list of [[rsvp.questions]] tables")
    seen: set[str] = {"guests", "dietary", "accessibility", "remark"}
    options["questions"] = []
    for index, item in enumerate(questions, start=1):
        if not isinstance(item, dict):
            raise rsvp.fail("questions", f"item {index} must be a table")
        question = _Reader(rsvp.source, item, f"rsvp.questions[{index}].")
        key = question.text("key")
        if not SLUG.fullmatch(key.replace("_", "-")) or key in seen:
            raise question.fail("key", f"{key!r} must be unique, lower-case letters, digits, - or _")
        seen.add(key)
        kind = question.text("type", "text")
        if kind not in QUESTION_TYPES:
            raise question.fail("type", f"{kind!r} is not one of {', '.join(QUESTION_TYPES)}")
        choices = item.get("choices", [])
        if kind == "choice" and (
            not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices)
        ):
            raise question.fail("choices", "a choice question needs a list of at least two texts")
        options["questions"].append(
            {
                "key": key,
                "label": question.text("label"),
                "label_en": question.text("label_en", "") or question.text("label"),
                "type": kind,
                "choices": list(choices) if kind == "choice" else [],
                "required": bool(question.optional("required", bool, "true or false")),
            }
        )
    return options
