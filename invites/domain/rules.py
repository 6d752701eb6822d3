"""Reminder rules, the pure part: a rule parsed ("-7d 10:00", "-2h", or an absolute local time), when it is
due for an event (wall-clock arithmetic in the event's zone, so daylight saving never shifts it), held out of
the quiet hours, and when a missed one is no longer worth sending. The rules are kept and swept by
invites.services.reminders."""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from invites.domain.errors import InputError
from invites.domain.reference import Municipalities
from invites.domain.segment import Segment


class Audience(enum.StrEnum):
    NO_ANSWER = "no-answer"
    ACCEPTED = "accepted"
    TENTATIVE = "tentative"
    WAITLIST = "waitlist"
    INVITED = "invited"


# Kinds a reminder may use: each carries the calendar as a REQUEST, so it never removes the meeting.
REMINDER_TEMPLATES = ("reminder", "invitation", "update")

# How far a rule may reach: a reminder more than a year before the meeting reminds nobody of anything, and
# the bounds keep every moment a rule can name far inside what datetime can count.
MAX_OFFSET_DAYS = 366
EARLIEST_YEAR, LATEST_YEAR = 2000, 2099

OFFSET = re.compile(
    r"-\s*(?:(?P<days>\d+)\s*d)?\s*(?:(?P<hours>\d+)\s*h)?\s*(?:(?P<minutes>\d+)\s*m)?"
    r"(?:\s+(?P<clock>\d{1,2}[:.]\d{2}))?"
)


class RuleError(InputError):
    """A rule that cannot be kept. `field` is the part it is about (name, when, audience, template, segment);
    `beyond_limit` is true when the value was understood but reaches further than a rule may."""

    def __init__(self, field: str, message: str, beyond_limit: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.beyond_limit = beyond_limit


@dataclass(frozen=True)
class Offset:
    """Before the start: whole days on the calendar (then at `clock`, or at the start's time of day), and
    hours and minutes of elapsed time."""

    days: int = 0
    minutes: int = 0
    clock: time | None = None

    def __str__(self) -> str:
        parts = []
        if self.days:
            parts.append(f"{self.days}d")
        if self.minutes // 60:
            parts.append(f"{self.minutes // 60}h")
        if self.minutes % 60:
            parts.append(f"{self.minutes % 60}m")
        text = "-" + ("".join(parts) or "0d")
        return f"{text} {self.clock:%H:%M}" if self.clock else text


def parse_offset(text: str) -> Offset:
    """'-7d', '-1d 10:00', '-2h', '-1h30m', '-0d 08:00' → an Offset of at most MAX_OFFSET_DAYS; raises
    RuleError otherwise."""
    found = OFFSET.fullmatch(text.strip())
    if not found or not any(found.group(g) for g in ("days", "hours", "minutes")):
        raise RuleError(
            "when", f"{text!r} is not an offset before the start such as '-7d', '-1d 10:00' or '-2h'"
        )
    # Seven digits of anything is past the limit already, and int() of thousands of digits is refused.
    if any(len(found[g] or "") > 6 for g in ("days", "hours", "minutes")) or (
        int(found["days"] or 0) * 1440 + int(found["hours"] or 0) * 60 + int(found["minutes"] or 0)
        > MAX_OFFSET_DAYS * 1440
    ):
        raise RuleError(
            "when",
            f"{text!r} is more than {MAX_OFFSET_DAYS} days before the start; "
            f"a reminder goes at most {MAX_OFFSET_DAYS} days ahead ('-{MAX_OFFSET_DAYS}d')",
            beyond_limit=True,
        )
    days = int(found["days"] or 0)
    minutes = int(found["hours"] or 0) * 60 + int(found["minutes"] or 0)
    clock = None
    if found["clock"]:
        if minutes:
            raise RuleError("when", f"{text!r}: a time of day goes with whole days only, as in '-1d 10:00'")
        try:
            clock = time.fromisoformat(found["clock"].replace(".", ":").zfill(5))
        except ValueError as exc:
            raise RuleError("when", f"{text!r}: {found['clock']!r} is not a time of day") from exc
    return Offset(days, minutes, clock)


@dataclass(frozen=True)
class When:
    """An offset from the event's start, or an absolute moment."""

    offset: Offset | None = None
    at: datetime | None = None


def parse_when(value: str | datetime, zone: ZoneInfo) -> When:
    """A rule's `when`: an offset ('-7d 10:00') or an ISO date and time in the years EARLIEST_YEAR to
    LATEST_YEAR, local to `zone` unless it says otherwise; raises RuleError otherwise."""
    if isinstance(value, str) and value.strip().startswith("-"):
        return When(offset=parse_offset(value))
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise RuleError(
                "when",
                f"{value!r} is neither an offset such as '-7d 10:00' nor a date and time (YYYY-MM-DDTHH:MM)",
            ) from exc
    if not isinstance(value, datetime):
        raise RuleError("when", f"{value!r} is not an offset or a date and time")
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise RuleError(
            "when",
            f"{value.isoformat()!r} is not in the years {EARLIEST_YEAR} to {LATEST_YEAR}; "
            "give the date and time the reminder should go out",
            beyond_limit=True,
        )
    return When(at=value.replace(tzinfo=zone) if value.tzinfo is None else value)


def local(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """A wall-clock time in `zone`, in UTC. A time that does not exist (skipped when the clocks go
    forward) is read with the offset before the change, so 02:30 on that night is 03:30 summer time."""
    return datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)


def scheduled_at(when: When, starts_at: datetime, zone: ZoneInfo) -> datetime:
    """When the rule says the reminder is due, in UTC."""
    if when.at is not None:
        return when.at.astimezone(UTC)
    if when.offset is None:
        raise ValueError("a rule needs an offset or a moment")
    start = starts_at.astimezone(zone)
    day = start.date() - timedelta(days=when.offset.days)
    moment = local(day, when.offset.clock or start.time().replace(tzinfo=None), zone)
    return moment - timedelta(minutes=when.offset.minutes)


@dataclass(frozen=True)
class SendingHours:
    """The local hours in which reminders may go out, [start, end); outside them they are held."""

    start: time = time(8, 0)
    end: time = time(21, 0)

    @classmethod
    def parse(cls, text: str) -> SendingHours:
        """'08:00-21:00' → SendingHours; INVITES_REMINDER_HOURS."""
        try:
            first, last = (time.fromisoformat(part.strip().zfill(5)) for part in text.split("-"))
        except ValueError as exc:
            raise InputError(f"INVITES_REMINDER_HOURS {text!r} must be like '08:00-21:00'") from exc
        if not first < last:
            raise InputError(f"INVITES_REMINDER_HOURS {text!r}: the start must come before the end")
        return cls(first, last)

    def allows(self, moment: datetime, zone: ZoneInfo) -> bool:
        return self.start <= moment.astimezone(zone).time().replace(tzinfo=None) < self.end

    def next_allowed(self, moment: datetime, zone: ZoneInfo) -> datetime:
        """`moment` itself when it is inside the hours, else the next morning's start (the same morning
        when it is before the start)."""
        if self.allows(moment, zone):
            return moment
        wall = moment.astimezone(zone)
        day = wall.date() if wall.time().replace(tzinfo=None) < self.start else wall.date() + timedelta(1)
        return local(day, self.start, zone)


class State(enum.StrEnum):
    WAITING = "waiting"  # its time has not come
    DUE = "due"
    HELD = "held"  # due, but now is in the quiet hours: it goes out when they end
    PASSED = "passed"  # missed, and too late now: the event started or the rule's window closed


@dataclass(frozen=True)
class Window:
    """When a rule sends: from `send_from` (its time, moved out of the quiet hours) until `until`."""

    scheduled_at: datetime
    send_from: datetime
    until: datetime

    def state(self, now: datetime, hours: SendingHours, zone: ZoneInfo) -> State:
        if now >= self.until:
            return State.PASSED
        if now < self.send_from:
            return State.WAITING
        return State.DUE if hours.allows(now, zone) else State.HELD


def window(
    when: When, starts_at: datetime, zone: ZoneInfo, hours: SendingHours, max_late: timedelta | None
) -> Window:
    """A reminder missed (the service was down) is still sent late, up to `max_late` after its time (None:
    no limit), and never once the event has started."""
    scheduled = scheduled_at(when, starts_at, zone)
    send_from = hours.next_allowed(scheduled, zone)
    until = starts_at if max_late is None else min(starts_at, send_from + max_late)
    return Window(scheduled, send_from, until)


def parse_audience(value: str | Sequence[str]) -> tuple[Audience, ...]:
    """'no-answer', 'accepted,tentative' or a list of those → the audiences, in a stable order."""
    names = value.split(",") if isinstance(value, str) else list(value)
    found = set()
    for name in names:
        try:
            found.add(Audience(str(name).strip()))
        except ValueError:
            raise RuleError(
                "audience", f"audience {name!r} is not one of {', '.join(a.value for a in Audience)}"
            ) from None
    if not found:
        raise RuleError("audience", "a reminder needs an audience")
    return tuple(a for a in Audience if a in found)


@dataclass(frozen=True)
class RuleSpec:
    """A rule as an organiser writes it, in the event file or through the API."""

    name: str
    when: str
    audience: tuple[Audience, ...]
    template: str = "reminder"
    segment: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True

    @classmethod
    def parse(
        cls,
        name: str,
        when: str | datetime,
        audience: str | Sequence[str],
        template: str = "reminder",
        segment: dict[str, Any] | None = None,
        enabled: bool = True,
        zone: ZoneInfo | None = None,
        places: Municipalities | None = None,
    ) -> RuleSpec:
        """Checks every part, so a bad rule is refused when it is written, not when it is due. `places`
        is the list the segment's municipalities are looked up in (the bundled one when None)."""
        name = name.strip()
        if not name or len(name) > 120:
            raise RuleError("name", "a reminder needs a name of at most 120 characters")
        parsed = parse_when(when, zone or ZoneInfo("Europe/Amsterdam"))
        text = str(parsed.offset) if parsed.offset else parsed.at.isoformat() if parsed.at else ""
        if template not in REMINDER_TEMPLATES:
            raise RuleError(
                "template", f"template {template!r} is not one of {', '.join(REMINDER_TEMPLATES)}"
            )
        try:
            chosen_segment = Segment.parse(
                **{
                    key: (segment or {}).get(key, ())
                    for key in ("roles", "municipalities", "tags", "languages")
                },
                attended_previous=bool((segment or {}).get("attended_previous", False)),
                places=places,
            )
        except InputError as exc:
            raise RuleError("segment", str(exc)) from exc
        return cls(name, text, parse_audience(audience), template, chosen_segment.as_dict(), enabled)


DEFAULT_RULES = (
    RuleSpec("no-answer-7d", "-7d 10:00", (Audience.NO_ANSWER,)),
    RuleSpec("practical-1d", "-1d 10:00", (Audience.ACCEPTED, Audience.TENTATIVE)),
)
