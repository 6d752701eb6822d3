"""iCalendar (RFC 5545) objects for iTIP (RFC 5546) invitations, built with the icalendar library.

The parts that are the same for every recipient (VTIMEZONE, the VEVENT's fixed properties) are built once per
campaign by `CalendarTemplate`; `for_attendee` adds what belongs to one person.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, Timezone, vCalAddress, vText

PRODID = "-//invites//Uitnodigingen//NL"


@dataclass(frozen=True)
class CalendarEvent:
    uid: str
    sequence: int
    summary: str
    description: str
    starts_at: datetime
    ends_at: datetime
    timezone: str
    location: str
    geo: tuple[float, float] | None
    organiser_name: str
    organiser_email: str
    cancelled: bool = False


@cache
def vtimezone(zone: str, first: date, last: date) -> Timezone:
    """A VTIMEZONE with STANDARD and DAYLIGHT for the years around the event."""
    return Timezone.from_tzid(zone, first_date=first, last_date=last)


class CalendarTemplate:
    """The calendar object of one event, for one method; per-attendee copies are cheap."""

    def __init__(self, spec: CalendarEvent, method: str, stamp: datetime) -> None:
        if method not in ("REQUEST", "CANCEL"):
            raise ValueError(f"unsupported iTIP method {method!r}")
        self.spec = spec
        self.method = method
        self.stamp = stamp
        zone = ZoneInfo(spec.timezone)
        self._start = spec.starts_at.astimezone(zone)
        self._end = spec.ends_at.astimezone(zone)
        year = self._start.year
        self._timezone = vtimezone(spec.timezone, date(year - 1, 1, 1), date(year + 1, 12, 31))

    def for_attendee(self, email: str, name: str, url: str) -> bytes:
        spec = self.spec
        calendar = Calendar()
        calendar.add("prodid", PRODID)
        calendar.add("version", "2.0")
        calendar.add("calscale", "GREGORIAN")
        calendar.add("method", self.method)
        calendar.add_component(self._timezone)
        event = Event()
        event.add("uid", spec.uid)
        event.add("sequence", spec.sequence)
        event.add("dtstamp", self.stamp)
        event.add("dtstart", self._start)
        event.add("dtend", self._end)
        event.add("summary", spec.summary)
        event.add("description", spec.description)
        event.add("location", spec.location)
        if spec.geo:
            event.add("geo", spec.geo)
        event.add("url", url)
        event.add("status", "CANCELLED" if self.method == "CANCEL" else "CONFIRMED")
        event.add("transp", "OPAQUE")
        organiser = vCalAddress(f"mailto:{spec.organiser_email}")
        organiser.params["CN"] = vText(spec.organiser_name)
        event.add("organizer", organiser)
        attendee = vCalAddress(f"mailto:{email}")
        if name:
            attendee.params["CN"] = vText(name)
        attendee.params["CUTYPE"] = "INDIVIDUAL"
        attendee.params["ROLE"] = "REQ-PARTICIPANT"
        attendee.params["PARTSTAT"] = "NEEDS-ACTION"
        attendee.params["RSVP"] = "TRUE"
        event.add("attendee", attendee)
        calendar.add_component(event)
        return bytes(calendar.to_ical())


def utc_stamp(moment: datetime) -> str:
    """A UTC instant in the compact iCalendar form (for calendar links)."""
    return moment.astimezone(ZoneInfo("UTC")).strftime("%Y%m%dT%H%M%SZ")
