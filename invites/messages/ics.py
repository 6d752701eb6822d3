"""iCalendar (RFC 5545) objects for iTIP (RFC 5546) invitations, built with the icalendar library.

The parts that are the same for every recipient (VTIMEZONE, the VEVENT's fixed properties) are built once per
campaign by `CalendarTemplate`. `for_attendee` builds a whole new calendar for one person (the reference);
`fast_for_attendee` splices that person's URL and ATTENDEE lines, serialised by icalendar itself, into the
bytes of a calendar serialised once, and gives the same bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, Timezone, TimezoneDaylight, TimezoneStandard, vCalAddress, vText
from icalendar.parser import Parameters

PRODID = "-//invites//Uitnodigingen//NL"
METHODS = ("REQUEST", "CANCEL")
# A calendar serialised with these stand-ins shows where each attendee's own lines go.
_STAND_IN_EMAIL = "stand-in@invites.invalid"
_STAND_IN_URL = "https://invites.invalid/stand-in"
# A content line ends at a CRLF that no space or tab follows (those continue a folded line).
_LINE_END = re.compile(rb"\r\n(?![ \t])")


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


@cache
def vtimezone(zone: str, first: date, last: date) -> Timezone:
    """A VTIMEZONE with STANDARD and DAYLIGHT for the years around the event, written for every reader.

    Each observance lists every onset as an RDATE of its own, its DTSTART among them: ical.js reads only
    the first value of an RDATE line, and ignores DTSTART once there is an RDATE. Each onset is the local
    time in TZOFFSETFROM (RFC 5545 3.6.5), as a strict reader and Outlook take it; icalendar writes the
    spring change in the new offset (03:00 instead of 02:00), an hour after it happens."""
    built = Timezone.from_tzid(zone, first_date=first, last_date=last)
    tzinfo = ZoneInfo(zone)
    timezone = Timezone()
    for name in ("TZID", "COMMENT"):
        timezone.add(name, built[name])
    for observance in built.subcomponents:
        if not isinstance(observance, TimezoneStandard | TimezoneDaylight):
            raise RuntimeError(f"icalendar wrote a {observance.name} into the VTIMEZONE")
        offset_from, offset_to = observance.TZOFFSETFROM, observance.TZOFFSETTO
        if offset_from is None or offset_to is None or not isinstance(observance.DTSTART, datetime):
            raise RuntimeError(f"icalendar wrote a {observance.name} without its onset or offsets")
        listed = [start for start, _ in observance.rdates if isinstance(start, datetime)]
        onsets = sorted(
            {_onset(tzinfo, local, offset_from, offset_to) for local in [observance.DTSTART, *listed]}
        )
        rewritten = TimezoneStandard() if isinstance(observance, TimezoneStandard) else TimezoneDaylight()
        rewritten.DTSTART = onsets[0]
        for onset in onsets:
            rewritten.add("RDATE", onset)
        rewritten.add("TZNAME", observance["TZNAME"])
        rewritten.TZOFFSETFROM = offset_from
        rewritten.TZOFFSETTO = offset_to
        timezone.add_component(rewritten)
    return timezone


def _onset(zone: ZoneInfo, local: datetime, offset_from: timedelta, offset_to: timedelta) -> datetime:
    """The onset of a change at `local` as the local time before it (in TZOFFSETFROM).

    `local` is in either offset; the one that puts it on the instant the zone changes from `offset_from`
    to `offset_to` is right. The first observance only marks where the VTIMEZONE starts and stays as it is.
    """
    for offset in (offset_to, offset_from):
        instant = (local - offset).replace(tzinfo=UTC)
        before = (instant - timedelta(seconds=1)).astimezone(zone).utcoffset()
        if instant.astimezone(zone).utcoffset() == offset_to and before == offset_from:
            return (instant + offset_from).replace(tzinfo=None)
    return local


class CalendarTemplate:
    """The calendar object of one event, for one method; per-attendee copies are cheap.

    `partstat` and `rsvp` describe the attendee: an invitation asks (NEEDS-ACTION, RSVP=TRUE); a confirmation
    of an answer already given says what it was (ACCEPTED, RSVP=FALSE).
    """

    def __init__(
        self,
        spec: CalendarEvent,
        method: str,
        stamp: datetime,
        *,
        partstat: str = "NEEDS-ACTION",
        rsvp: bool = True,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unsupported iTIP method {method!r}")
        self.spec = spec
        self.method = method
        self.stamp = stamp
        self.partstat = partstat
        self.rsvp = rsvp
        zone = ZoneInfo(spec.timezone)
        self._start = spec.starts_at.astimezone(zone)
        self._end = spec.ends_at.astimezone(zone)
        year = self._start.year
        self._timezone = vtimezone(spec.timezone, date(year - 1, 1, 1), date(year + 1, 12, 31))
        self._pieces = self._split(self.for_attendee(_STAND_IN_EMAIL, "", _STAND_IN_URL))
        # The attendee's parameters other than CN, sorted by name as icalendar writes them.
        self._attendee_params = self.attendee(_STAND_IN_EMAIL, "").params.to_ical().decode()

    def attendee(self, email: str, name: str) -> vCalAddress:
        attendee = vCalAddress(f"mailto:{email}")
        if name:
            attendee.params["CN"] = vText(name)
        attendee.params["CUTYPE"] = "INDIVIDUAL"
        attendee.params["ROLE"] = "REQ-PARTICIPANT"
        attendee.params["PARTSTAT"] = self.partstat
        attendee.params["RSVP"] = "TRUE" if self.rsvp else "FALSE"
        return attendee

    def for_attendee(self, email: str, name: str, url: str) -> bytes:
        """The whole calendar for one attendee, built anew with icalendar: the reference."""
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
        event.add("attendee", self.attendee(email, name))
        calendar.add_component(event)
        return bytes(calendar.to_ical())

    def _split(self, data: bytes) -> list[bytes | str]:
        """The serialised calendar as fixed byte runs, with "URL" and "ATTENDEE" where those lines go."""
        pieces: list[bytes | str] = []
        run: list[bytes] = []
        for line in _LINE_END.split(data.removesuffix(b"\r\n")):
            name = line.split(b":", 1)[0].split(b";", 1)[0]
            if name in (b"URL", b"ATTENDEE"):
                pieces.append(b"".join(run))
                pieces.append(name.decode())
                run = []
            else:
                run.append(line + b"\r\n")
        pieces.append(b"".join(run))
        if sorted(p for p in pieces if isinstance(p, str)) != ["ATTENDEE", "URL"]:
            raise RuntimeError("the calendar skeleton lost its URL or ATTENDEE line")
        return pieces

    def fast_for_attendee(self, email: str, name: str, url: str) -> bytes:
        """The same bytes as `for_attendee`, from the calendar serialised once plus this person's lines,
        written as icalendar writes them (the tests compare the two byte for byte)."""
        cn = Parameters(CN=vText(name)).to_ical().decode() + ";" if name else ""
        own = {
            "URL": fold(f"URL:{url}"),
            "ATTENDEE": fold(f"ATTENDEE;{cn}{self._attendee_params}:mailto:{email}"),
        }
        return b"".join(own[p] if isinstance(p, str) else p for p in self._pieces)


def fold(line: str) -> bytes:
    """One content line folded as icalendar folds it (RFC 5545 3.1), with its CRLF: at most 74 octets
    before each fold, never inside a UTF-8 character, and never after the "\\" or "^" that starts an
    escape (icalendar carries that over to the next line)."""
    data = line.encode("utf-8")
    segments = []
    start, size = 0, len(data)
    while size - start > 74:
        cut = start + 74
        while data[cut] & 0xC0 == 0x80:  # a continuation byte: back off to the character's start
            cut -= 1
        if data[cut - 1] in b"\\^":
            cut -= 1
        segments.append(data[start:cut])
        start = cut
    segments.append(data[start:])
    return b"\r\n ".join(segments) + b"\r\n"


def utc_stamp(moment: datetime) -> str:
    """A UTC instant in the compact iCalendar form (for calendar links)."""
    return moment.astimezone(ZoneInfo("UTC")).strftime("%Y%m%dT%H%M%SZ")
