"""Calendar objects for iTIP invitations, read back with the icalendar parser."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar
from icalendar.cal import Component

from invites.messages.ics import PRODID, CalendarEvent, CalendarTemplate, fold, utc_stamp

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
STAMP = datetime(2018, 1, 15, 9, 0, tzinfo=UTC)
URL = "https://invites.example.org/r/abc.def"
DESCRIPTION = (
    "dinsdag 13 februari 2018, 19.30 – 22.00 uur\n\nProgramma:\n19.30 – 19.35  Welkomstwoord; koffie"
)
SPEC = CalendarEvent(
    uid="0123abcd-lokaal-samenspel-2018@invites",
    sequence=2,
    summary="Inspiratiebijeenkomst Lokaal samenspel in verandering",
    description=DESCRIPTION,
    starts_at=datetime(2018, 2, 13, 18, 30, tzinfo=UTC),
    ends_at=datetime(2018, 2, 13, 21, 0, tzinfo=UTC),
    timezone="Europe/Amsterdam",
    location="Fort Vreeswijk, Fort Vreeswijk 1, Nieuwegein",
    geo=(52.0072, 5.0953),
    organiser_name="VNG afdeling Utrecht",
    organiser_email="uitnodigingen@example.org",
)


def build(method: str = "REQUEST", name: str = "Zoë Ĳsbrandt", spec: CalendarEvent = SPEC) -> bytes:
    return CalendarTemplate(spec, method, STAMP).for_attendee("zoe@example.org", name, URL)


def parsed(data: bytes) -> tuple[Calendar, Component]:
    calendar = Calendar.from_ical(data)
    events = calendar.walk("VEVENT")
    assert len(events) == 1
    return calendar, events[0]


def test_calendar_header() -> None:
    calendar, _ = parsed(build())
    assert str(calendar["METHOD"]) == "REQUEST"
    assert str(calendar["VERSION"]) == "2.0"
    assert str(calendar["PRODID"]) == PRODID
    assert str(calendar["CALSCALE"]) == "GREGORIAN"


def test_vtimezone_has_standard_and_daylight() -> None:
    calendar, _ = parsed(build())
    zones = calendar.walk("VTIMEZONE")
    assert len(zones) == 1
    assert str(zones[0]["TZID"]) == "Europe/Amsterdam"
    kinds = {sub.name for sub in zones[0].subcomponents}
    assert kinds == {"STANDARD", "DAYLIGHT"}


def test_start_and_end_are_local_with_tzid_and_the_right_instant() -> None:
    data = build()
    _, event = parsed(data)
    assert b"DTSTART;TZID=Europe/Amsterdam:20180213T193000\r\n" in data
    assert b"DTEND;TZID=Europe/Amsterdam:20180213T220000\r\n" in data
    assert event["DTSTART"].params["TZID"] == "Europe/Amsterdam"
    assert event["DTSTART"].dt == datetime(2018, 2, 13, 18, 30, tzinfo=UTC)
    assert event["DTEND"].dt == datetime(2018, 2, 13, 21, 0, tzinfo=UTC)
    assert event["DTSTAMP"].dt == STAMP
    assert b"DTSTAMP:20180115T090000Z\r\n" in data


def test_identity_and_texts() -> None:
    _, event = parsed(build())
    assert str(event["UID"]) == SPEC.uid
    assert event["SEQUENCE"] == 2
    assert str(event["SUMMARY"]) == SPEC.summary
    assert str(event["DESCRIPTION"]) == DESCRIPTION
    assert str(event["LOCATION"]) == SPEC.location
    assert str(event["URL"]) == URL
    assert str(event["STATUS"]) == "CONFIRMED"
    assert str(event["TRANSP"]) == "OPAQUE"


def test_geo() -> None:
    _, event = parsed(build())
    assert (event["GEO"].latitude, event["GEO"].longitude) == pytest.approx((52.0072, 5.0953))


def test_no_geo_without_coordinates() -> None:
    spec = CalendarEvent(**{**SPEC.__dict__, "geo": None})
    _, event = parsed(build(spec=spec))
    assert "GEO" not in event


def test_organizer() -> None:
    _, event = parsed(build())
    organizer = event["ORGANIZER"]
    assert str(organizer) == "mailto:uitnodigingen@example.org"
    assert organizer.params["CN"] == "VNG afdeling Utrecht"


def test_attendee() -> None:
    _, event = parsed(build())
    attendee = event["ATTENDEE"]
    assert str(attendee) == "mailto:zoe@example.org"
    assert attendee.params["CN"] == "Zoë Ĳsbrandt"
    assert attendee.params["ROLE"] == "REQ-PARTICIPANT"
    assert attendee.params["PARTSTAT"] == "NEEDS-ACTION"
    assert attendee.params["RSVP"] == "TRUE"
    assert attendee.params["CUTYPE"] == "INDIVIDUAL"


def test_attendee_without_name_has_no_cn() -> None:
    _, event = parsed(build(name=""))
    assert "CN" not in event["ATTENDEE"].params


@pytest.mark.parametrize("name", ["Berg, Jan ; van: der", 'Jan "de" Berg'])
def test_attendee_name_with_separators_round_trips(name: str) -> None:
    _, event = parsed(build(name=name))
    assert event["ATTENDEE"].params["CN"] == name
    assert str(event["ATTENDEE"]) == "mailto:zoe@example.org"
    assert event["ATTENDEE"].params["RSVP"] == "TRUE"


def test_cancel() -> None:
    calendar, event = parsed(build("CANCEL"))
    assert str(calendar["METHOD"]) == "CANCEL"
    assert str(event["STATUS"]) == "CANCELLED"
    assert str(event["UID"]) == SPEC.uid


def test_attendees_get_their_own_copy() -> None:
    template = CalendarTemplate(SPEC, "REQUEST", STAMP)
    first = template.for_attendee("a@example.org", "A", URL + "1")
    second = template.for_attendee("b@example.org", "B", URL + "2")
    _, one = parsed(first)
    _, two = parsed(second)
    assert str(one["ATTENDEE"]) == "mailto:a@example.org"
    assert str(two["ATTENDEE"]) == "mailto:b@example.org"
    assert str(two["URL"]) == URL + "2"
    assert len(Calendar.from_ical(second).walk("VTIMEZONE")) == 1


def test_lines_are_folded_and_crlf() -> None:
    data = build()
    lines = data.split(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in lines) <= 75


@pytest.mark.parametrize("method", ["PUBLISH", "request", "REPLY", ""])
def test_invalid_method_raises(method: str) -> None:
    with pytest.raises(ValueError, match="unsupported iTIP method"):
        CalendarTemplate(SPEC, method, STAMP)


def test_utc_stamp() -> None:
    assert utc_stamp(datetime(2018, 2, 13, 19, 30, tzinfo=AMSTERDAM)) == "20180213T183000Z"
    assert utc_stamp(datetime(2018, 6, 13, 19, 30, tzinfo=AMSTERDAM)) == "20180613T173000Z"


NAMES = [
    "",
    "Zoë Ĳsbrandt",
    "Berg, Jan ; van: der",
    'Jan "de" Berg',
    "O'Brien",
    "caret ^ and backslash \\ and ^n",
    "Ž" * 60,
    "a" * 73 + "\\" + "b" * 10,
    "a" * 60 + "^" * 30,
    "Coöperatie " * 9,
]


@pytest.mark.parametrize("method", ["REQUEST", "CANCEL"])
@pytest.mark.parametrize("name", NAMES)
def test_fast_copy_is_the_same_bytes_as_a_new_calendar(name: str, method: str) -> None:
    template = CalendarTemplate(SPEC, method, STAMP)
    for email, url in [
        ("zoe@example.org", URL),
        ("a.very.long.address.for.folding.tests@subdomain.example.org", URL + "?x=" + "y" * 80),
    ]:
        assert template.fast_for_attendee(email, name, url) == template.for_attendee(email, name, url)


@pytest.mark.parametrize(("partstat", "rsvp"), [("ACCEPTED", False), ("TENTATIVE", False)])
def test_a_confirmation_says_the_answer(partstat: str, rsvp: bool) -> None:
    template = CalendarTemplate(SPEC, "REQUEST", STAMP, partstat=partstat, rsvp=rsvp)
    data = template.fast_for_attendee("zoe@example.org", "Zoë", URL)
    assert data == template.for_attendee("zoe@example.org", "Zoë", URL)
    _, event = parsed(data)
    assert event["ATTENDEE"].params["PARTSTAT"] == partstat
    assert event["ATTENDEE"].params["RSVP"] == "FALSE"


@pytest.mark.parametrize("line", ["x" * 74, "x" * 75, "é" * 40, "a" + "é" * 37, "x" * 73 + "^n" + "y" * 100])
def test_fold_never_passes_75_octets_and_unfolds_to_the_line(line: str) -> None:
    data = fold(line)
    assert data.endswith(b"\r\n")
    rows = data[:-2].split(b"\r\n")
    assert all(len(row) <= 75 for row in rows)
    assert all(row.startswith(b" ") for row in rows[1:])
    assert b"".join([rows[0], *(row[1:] for row in rows[1:])]).decode("utf-8") == line


# --- The VTIMEZONE as its readers read it ----------------------------------------------------------------

# An observance's onsets: the local times, in TZOFFSETFROM, at which its offset takes effect.
Reader = Callable[[Component], list[datetime]]


def rdate_lines(observance: Component) -> list[Any]:
    lines = observance.get("RDATE", [])
    return lines if isinstance(lines, list) else [lines]


def strict_onsets(observance: Component) -> list[datetime]:
    """RFC 5545 3.6.5 and 3.8.5.2: DTSTART is the first onset, and every value of every RDATE adds one."""
    assert "RRULE" not in observance, "this reader expands no RRULE; the VTIMEZONE should carry none"
    return [observance["DTSTART"].dt, *(value.dt for line in rdate_lines(observance) for value in line.dts)]


def icaljs_onsets(observance: Component) -> list[datetime]:
    """As ical.js's Timezone._expandComponent reads them: DTSTART only when there is no RDATE (and no RRULE),
    else the first value of each RDATE line alone."""
    lines = rdate_lines(observance)
    if not lines:
        return [observance["DTSTART"].dt]
    return [line.dts[0].dt for line in lines]


def offsets_read(zone: Component, onsets: Reader) -> tuple[list[datetime], list[timedelta]]:
    """Every change of the VTIMEZONE as a UTC instant, in order, with the offset that holds from then on."""
    changes = sorted(
        ((local - sub["TZOFFSETFROM"].td).replace(tzinfo=UTC), sub["TZOFFSETTO"].td)
        for sub in zone.subcomponents
        for local in onsets(sub)
    )
    return [instant for instant, _ in changes], [offset for _, offset in changes]


def spec_in(zone: str, year: int) -> CalendarEvent:
    starts = datetime(year, 6, 13, 19, 30, tzinfo=ZoneInfo(zone))
    return replace(SPEC, timezone=zone, starts_at=starts, ends_at=starts + timedelta(hours=2))


EVENTS = [
    spec_in("Europe/Amsterdam", 2018),
    spec_in("Europe/Amsterdam", 2026),
    replace(spec_in("Europe/Amsterdam", 2026), starts_at=datetime(2026, 12, 31, 23, 30, tzinfo=UTC)),
    spec_in("America/New_York", 2026),
]


@pytest.mark.parametrize("spec", EVENTS, ids=lambda spec: f"{spec.timezone}-{spec.starts_at:%Y-%m-%d}")
def test_every_onset_has_an_rdate_line_of_its_own_and_dtstart_is_one_of_them(spec: CalendarEvent) -> None:
    data = build(spec=spec)
    zone_text = data[data.index(b"BEGIN:VTIMEZONE") : data.index(b"END:VTIMEZONE")]
    rdate_text = [line for line in zone_text.split(b"\r\n") if line.startswith(b"RDATE")]
    assert rdate_text, "the VTIMEZONE lists no RDATE"
    assert all(b"," not in line for line in rdate_text), rdate_text
    (zone,) = Calendar.from_ical(data).walk("VTIMEZONE")
    assert {sub.name for sub in zone.subcomponents} == {"STANDARD", "DAYLIGHT"}
    for sub in zone.subcomponents:
        lines = rdate_lines(sub)
        assert [len(line.dts) for line in lines] == [1] * len(lines)
        assert sub["DTSTART"].dt in [line.dts[0].dt for line in lines]


@pytest.mark.parametrize("reader", [strict_onsets, icaljs_onsets], ids=["rfc5545", "ical.js"])
@pytest.mark.parametrize("spec", EVENTS, ids=lambda spec: f"{spec.timezone}-{spec.starts_at:%Y-%m-%d}")
def test_the_vtimezone_reads_as_zoneinfo_every_half_hour_of_the_years_it_covers(
    spec: CalendarEvent, reader: Reader
) -> None:
    (zone,) = Calendar.from_ical(build(spec=spec)).walk("VTIMEZONE")
    instants, offsets = offsets_read(zone, reader)
    tz = ZoneInfo(spec.timezone)
    year = spec.starts_at.astimezone(tz).year
    moment = datetime(year - 1, 1, 1, tzinfo=tz).astimezone(UTC)
    end = datetime(year + 2, 1, 1, tzinfo=tz).astimezone(UTC)
    assert instants[0] <= moment, f"the VTIMEZONE starts at {instants[0]}, after {moment}"
    wrong = []
    while moment < end:
        read = offsets[bisect_right(instants, moment) - 1]
        if read != moment.astimezone(tz).utcoffset():
            wrong.append(moment)
        moment += timedelta(minutes=30)
    assert not wrong, f"{len(wrong)} half hours read wrong, the first {wrong[0]} UTC"
