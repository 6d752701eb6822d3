"""Reminder rules, the pure part: offsets, due times across daylight saving, quiet hours, windows."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from invites.domain.errors import InputError
from invites.domain.eventfile import parse_event_file
from invites.domain.rules import (
    Audience,
    Offset,
    RuleError,
    RuleSpec,
    SendingHours,
    State,
    When,
    parse_audience,
    parse_offset,
    parse_when,
    scheduled_at,
    window,
)
from tests.conftest import EVENT_FILE

AMS = ZoneInfo("Europe/Amsterdam")
HOURS = SendingHours()
# Tuesday 13 February 2018, 19:30 CET: the example event.
START = datetime(2018, 2, 13, 19, 30, tzinfo=AMS)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("-7d", Offset(days=7)),
        ("-1d 10:00", Offset(days=1, clock=time(10, 0))),
        ("-1d 9.30", Offset(days=1, clock=time(9, 30))),
        ("-2h", Offset(minutes=120)),
        ("-1h30m", Offset(minutes=90)),
        ("-0d 08:00", Offset(days=0, clock=time(8, 0))),
    ],
)
def test_offsets_parse_and_print_back(text: str, offset: Offset) -> None:
    assert parse_offset(text) == offset
    assert parse_offset(str(offset)) == offset


@pytest.mark.parametrize("text", ["7d", "-", "-1x", "-2h 10:00", "-1d 25:00", "+1d"])
def test_a_wrong_offset_is_refused_with_the_text(text: str) -> None:
    with pytest.raises(InputError, match=r"offset|time of day"):
        parse_offset(text)


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("-366d", Offset(days=366)),
        ("-366d 23:59", Offset(days=366, clock=time(23, 59))),
        (f"-{366 * 24}h", Offset(minutes=366 * 24 * 60)),
        ("-365d", Offset(days=365)),
    ],
)
def test_offsets_up_to_a_year_and_a_day_are_kept(text: str, offset: Offset) -> None:
    assert parse_offset(text) == offset
    assert scheduled_at(When(offset=offset), START, AMS) < START


@pytest.mark.parametrize(
    "text",
    ["-367d", "-99999999999d", f"-{366 * 24 + 1}h", "-1000000m", "-365d 1441m", "-" + "9" * 5000 + "d"],
)
def test_an_offset_beyond_the_limit_is_refused_naming_the_limit(text: str) -> None:
    with pytest.raises(RuleError, match="more than 366 days before the start") as caught:
        parse_offset(text)
    assert caught.value.field == "when" and caught.value.beyond_limit


@pytest.mark.parametrize(
    "text", ["0001-01-01T00:00", "9999-12-31T23:59", "1999-12-31T23:59", "2100-01-01T00:00"]
)
def test_a_moment_outside_the_sane_years_is_refused(text: str) -> None:
    with pytest.raises(RuleError, match="not in the years 2000 to 2099") as caught:
        parse_when(text, AMS)
    assert caught.value.field == "when" and caught.value.beyond_limit


def test_a_moment_inside_the_years_is_kept() -> None:
    assert parse_when("2099-12-31T23:59", AMS).at == datetime(2099, 12, 31, 23, 59, tzinfo=AMS)
    assert parse_when("2000-01-01T00:00", AMS).at == datetime(2000, 1, 1, 0, 0, tzinfo=AMS)


def test_a_rule_error_names_its_part() -> None:
    for args, part in [
        (("", "-1d", "invited"), "name"),
        (("a", "morgen", "invited"), "when"),
        (("a", "-1d", "coming"), "audience"),
        (("a", "-1d", "invited", "cancellation"), "template"),
    ]:
        with pytest.raises(RuleError) as caught:
            RuleSpec.parse(*args)  # type: ignore[arg-type]
        assert caught.value.field == part and not caught.value.beyond_limit, args
    with pytest.raises(RuleError) as caught:
        RuleSpec.parse("a", "-1d", "invited", segment={"roles": ["keizer"]})
    assert caught.value.field == "segment"


def test_rule_kinds_give_their_moments() -> None:
    assert scheduled_at(parse_when("-7d 10:00", AMS), START, AMS) == utc(2018, 2, 6, 9, 0)
    assert scheduled_at(parse_when("-1d 10:00", AMS), START, AMS) == utc(2018, 2, 12, 9, 0)
    # Without a time of day: the start's own time, that many days earlier.
    assert scheduled_at(parse_when("-7d", AMS), START, AMS) == utc(2018, 2, 6, 18, 30)
    assert scheduled_at(parse_when("-2h", AMS), START, AMS) == utc(2018, 2, 13, 16, 30)
    # An absolute moment is local to the event's zone.
    assert scheduled_at(parse_when("2018-02-09T11:00", AMS), START, AMS) == utc(2018, 2, 9, 10, 0)
    assert scheduled_at(When(at=utc(2018, 2, 9, 10, 0)), START, AMS) == utc(2018, 2, 9, 10, 0)


def test_a_day_before_across_the_spring_change_keeps_the_wall_clock() -> None:
    # Monday 26 March 2018 19:30 CEST; the clocks went forward in the night before Sunday 25 March.
    monday = datetime(2018, 3, 26, 19, 30, tzinfo=AMS)
    due = scheduled_at(parse_when("-1d 10:00", AMS), monday, AMS)
    assert due == utc(2018, 3, 25, 8, 0)
    assert due.astimezone(AMS).strftime("%H:%M %Z") == "10:00 CEST"
    # A week before is still winter time: 10:00 CET is 09:00Z.
    assert scheduled_at(parse_when("-7d 10:00", AMS), monday, AMS) == utc(2018, 3, 19, 9, 0)
    # Without a time of day, the day before is 19:30 local, not 24 hours earlier.
    assert scheduled_at(parse_when("-1d", AMS), monday, AMS).astimezone(AMS).hour == 19


def test_the_autumn_change_and_a_time_that_does_not_exist() -> None:
    # Monday 29 October 2018; the clocks went back in the night before Sunday 28 October.
    monday = datetime(2018, 10, 29, 19, 30, tzinfo=AMS)
    assert scheduled_at(parse_when("-1d 10:00", AMS), monday, AMS) == utc(2018, 10, 28, 9, 0)
    assert scheduled_at(parse_when("-2d 10:00", AMS), monday, AMS) == utc(2018, 10, 27, 8, 0)
    # 02:30 on 25 March 2018 never happened in Amsterdam: it is read as 03:30 summer time.
    tuesday = datetime(2018, 3, 26, 19, 30, tzinfo=AMS)
    assert scheduled_at(parse_when("-1d 02:30", AMS), tuesday, AMS) == utc(2018, 3, 25, 1, 30)


def test_quiet_hours_hold_a_reminder_until_the_morning() -> None:
    night = datetime(2018, 2, 6, 3, 0, tzinfo=AMS)
    assert HOURS.next_allowed(night, AMS) == datetime(2018, 2, 6, 8, 0, tzinfo=AMS)
    late = datetime(2018, 2, 6, 21, 30, tzinfo=AMS)
    assert HOURS.next_allowed(late, AMS) == datetime(2018, 2, 7, 8, 0, tzinfo=AMS)
    nine = datetime(2018, 2, 6, 21, 0, tzinfo=AMS)
    assert HOURS.next_allowed(nine, AMS) == datetime(2018, 2, 7, 8, 0, tzinfo=AMS), "21:00 is quiet"
    day = datetime(2018, 2, 6, 10, 0, tzinfo=AMS)
    assert HOURS.next_allowed(day, AMS) == day
    # The morning after the spring change is 08:00 summer time.
    saturday_night = datetime(2018, 3, 24, 22, 0, tzinfo=AMS)
    assert HOURS.next_allowed(saturday_night, AMS) == utc(2018, 3, 25, 6, 0)


def test_sending_hours_are_configurable_and_checked() -> None:
    assert SendingHours.parse("09:30-17:00") == SendingHours(time(9, 30), time(17, 0))
    with pytest.raises(InputError, match="INVITES_REMINDER_HOURS"):
        SendingHours.parse("21:00-08:00")
    with pytest.raises(InputError, match="INVITES_REMINDER_HOURS"):
        SendingHours.parse("morning")


def test_the_window_of_a_rule_and_its_state_over_time() -> None:
    span = window(parse_when("-1d 03:00", AMS), START, AMS, HOURS, None)
    assert span.scheduled_at == datetime(2018, 2, 12, 3, 0, tzinfo=AMS)
    assert span.send_from == datetime(2018, 2, 12, 8, 0, tzinfo=AMS)
    assert span.until == START
    at = lambda *p: datetime(2018, 2, *p, tzinfo=AMS)  # noqa: E731
    assert span.state(at(12, 3, 0), HOURS, AMS) == State.WAITING
    assert span.state(at(12, 8, 0), HOURS, AMS) == State.DUE
    # Missed during downtime: caught up later the same day, held through the night, then sent.
    assert span.state(at(12, 20, 59), HOURS, AMS) == State.DUE
    assert span.state(at(13, 2, 0), HOURS, AMS) == State.HELD
    assert span.state(at(13, 8, 0), HOURS, AMS) == State.DUE
    assert span.state(START, HOURS, AMS) == State.PASSED
    # With a maximum lateness the window closes earlier.
    short = window(parse_when("-7d 10:00", AMS), START, AMS, HOURS, timedelta(hours=24))
    assert short.until == datetime(2018, 2, 7, 10, 0, tzinfo=AMS)
    assert short.state(at(7, 10, 0), HOURS, AMS) == State.PASSED


def test_audiences_parse_in_a_stable_order() -> None:
    assert parse_audience(["tentative", "accepted"]) == (Audience.ACCEPTED, Audience.TENTATIVE)
    assert parse_audience("no-answer") == (Audience.NO_ANSWER,)
    assert parse_audience("waitlist, invited") == (Audience.WAITLIST, Audience.INVITED)
    with pytest.raises(InputError, match="'coming' is not one of"):
        parse_audience("coming")


def test_a_rule_is_checked_whole() -> None:
    spec = RuleSpec.parse("route", "-1d 10:00", ["accepted"], segment={"roles": ["burgemeester"]})
    assert spec.when == "-1d 10:00"
    assert spec.segment["roles"] == ["mayor"]
    with pytest.raises(InputError, match="template 'waitlist'"):
        RuleSpec.parse("x", "-1d", "accepted", template="waitlist")
    with pytest.raises(InputError, match="unknown role"):
        RuleSpec.parse("x", "-1d", "accepted", segment={"roles": ["dorpsomroeper"]})


EXTRA_RULES = b"""
[[reminders]]
name = "no-answer"
when = "-7d 10:00"
audience = "no-answer"

[[reminders]]
name = "route"
when = "-1d 10:00"
audience = ["accepted", "tentative"]
template = "reminder"
municipalities = ["Utrecht"]

[[reminders]]
name = "waiting"
when = 2018-02-09T11:00:00
audience = "waitlist"
"""


def test_the_event_file_reads_reminder_tables() -> None:
    spec = parse_event_file(EVENT_FILE.read_bytes() + EXTRA_RULES, "x.toml")
    assert spec.reminders is not None
    names = [rule.name for rule in spec.reminders]
    assert names == ["no-answer", "route", "waiting"]
    assert spec.reminders[1].audience == (Audience.ACCEPTED, Audience.TENTATIVE)
    assert spec.reminders[1].segment["municipalities"] == ["GM0344"]
    assert spec.reminders[2].when == "2018-02-09T11:00:00+01:00"
    assert parse_event_file(EVENT_FILE.read_bytes(), "x.toml").reminders is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('name = "a"\nwhen = "soon"\naudience = "invited"', "field 'reminders[1].when': 'soon' is neither"),
        ('name = "a"\nwhen = "-1d"', "field 'reminders[1].audience': is required"),
        ('name = "a"\naudience = "invited"', "field 'reminders[1].when': is required"),
        ('when = "-1d"\naudience = "invited"', "field 'reminders[1].name': is required"),
        ('name = "a"\nwhen = "-1d"\naudience = "invited"\nroles = "mayor"', "'reminders[1].roles'"),
        (
            'name = "a"\nwhen = "-99999999999d"\naudience = "invited"',
            "field 'reminders[1].when': '-99999999999d'",
        ),
        ('name = "a"\nwhen = 0001-01-01T00:00:00\naudience = "invited"', "'reminders[1].when': '0001-01-01"),
        ('name = "a"\nwhen = "-1d"\naudience = "coming"', "field 'reminders[1].audience': audience 'coming'"),
        (
            'name = "a"\nwhen = "-1d"\naudience = "invited"\nroles = ["keizer"]',
            "'reminders[1].segment': unknown",
        ),
    ],
)
def test_a_wrong_reminder_table_names_the_field(table: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_event_file(EVENT_FILE.read_bytes() + b"\n[[reminders]]\n" + table.encode(), "x.toml")


def test_every_reminder_template_is_a_message_kind() -> None:
    from invites.domain.rules import REMINDER_TEMPLATES
    from invites.messages.rendering import KINDS

    assert set(REMINDER_TEMPLATES) <= set(KINDS)
