"""The event form: its fields become the event an event file would give, checked by the same rules, and an
event becomes the form (and the file's tables) again."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from invites.db.models import Event, ProgrammeItem, Series
from invites.domain.eventfile import EventSpec, event_spec, parse_event_file
from invites.domain.eventform import FormError, event_tables, form_values, slug_for, spec_from_form
from invites.services.events import CALENDAR_FIELDS, PLAIN_FIELDS
from tests.conftest import EVENT_FILE

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
FORM = {
    "title": "Raadsavond Zeist: wonen & zorg",
    "slug": "",
    "date": "2025-03-04",
    "start": "19:30",
    "end": "21:45",
    "timezone": "Europe/Amsterdam",
    "language": "nl",
    "venue_name": "Gemeentehuis",
    "venue_address": "Het Rond 1",
    "venue_postcode": "3701 HS",
    "venue_city": "Zeist",
    "description": "Eerste alinea.\r\n\r\nTweede alinea.",
    "organiser_name": "Griffie Zeist",
    "organiser_email": "griffie@example.nl",
    "capacity": "80",
    "rsvp_deadline": "2025-03-01T12:00",
}


def test_the_form_gives_the_event_with_a_slug_made_from_the_title() -> None:
    spec = spec_from_form(FORM)

    assert spec.slug == "raadsavond-zeist-wonen-zorg"
    assert spec.title == "Raadsavond Zeist: wonen & zorg"
    assert spec.starts_at == datetime(2025, 3, 4, 19, 30, tzinfo=AMSTERDAM)
    assert spec.starts_at.astimezone(UTC) == datetime(2025, 3, 4, 18, 30, tzinfo=UTC)
    assert spec.ends_at == datetime(2025, 3, 4, 21, 45, tzinfo=AMSTERDAM)
    assert (spec.venue_name, spec.venue_address, spec.venue_postcode, spec.venue_city) == (
        "Gemeentehuis",
        "Het Rond 1",
        "3701 HS",
        "Zeist",
    )
    assert spec.description == "Eerste alinea.\n\nTweede alinea."
    assert (spec.organiser_name, spec.organiser_email) == ("Griffie Zeist", "griffie@example.nl")
    assert spec.capacity == 80
    assert spec.rsvp_deadline == datetime(2025, 3, 1, 12, 0, tzinfo=AMSTERDAM)
    assert spec.registration_closes_at == spec.starts_at, "as for a file: registration closes at the start"
    assert spec.reminders is None and spec.programme == [] and spec.series is None


def test_empty_optional_fields_are_left_out_and_defaults_apply() -> None:
    spec = spec_from_form(
        {"title": "Inloop", "date": "4-3-2025", "start": "19.30", "end": "20:00", "capacity": ""}
    )

    assert spec.slug == "inloop"
    assert spec.timezone == "Europe/Amsterdam" and spec.language == "nl"
    assert spec.starts_at == datetime(2025, 3, 4, 19, 30, tzinfo=AMSTERDAM), "Dutch dates and 19.30 read"
    assert spec.capacity is None and spec.rsvp_deadline is None
    assert spec.venue_name == "" and spec.organiser_email == ""


def test_a_given_slug_is_used_as_given() -> None:
    assert spec_from_form({**FORM, "slug": "zeist-maart"}).slug == "zeist-maart"


def test_the_form_and_an_event_file_with_the_same_values_give_the_same_event() -> None:
    data = b"""
slug = "raadsavond-zeist-wonen-zorg"
title = "Raadsavond Zeist: wonen & zorg"
date = 2025-03-04
start = "19:30"
end = "21:45"
description = "Eerste alinea.\\n\\nTweede alinea."
capacity = 80
rsvp_deadline = 2025-03-01T12:00:00
[venue]
name = "Gemeentehuis"
address = "Het Rond 1"
postcode = "3701 HS"
city = "Zeist"
[organiser]
name = "Griffie Zeist"
email = "griffie@example.nl"
"""
    assert spec_from_form(FORM) == parse_event_file(data)


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"end": "19:00"}, "end", "field 'end': 19:00 is not after the start 19:30"),
        ({"start": ""}, "start", "field 'start': is required (HH:MM)"),
        ({"start": "half acht"}, "start", "field 'start': 'half acht' is not a time of day (HH:MM)"),
        ({"date": "4 maart"}, "date", "field 'date': '4 maart' is not a date (YYYY-MM-DD)"),
        ({"date": ""}, "date", "field 'date': is required, as YYYY-MM-DD"),
        ({"capacity": "veel"}, "capacity", "field 'capacity': 'veel' is not a whole number"),
        ({"capacity": "0"}, "capacity", "field 'capacity': must be at least 1"),
        (
            {"timezone": "Europe/Zeist"},
            "timezone",
            "field 'timezone': 'Europe/Zeist' is not an IANA time zone",
        ),
        ({"language": "de"}, "language", "field 'language': 'de' is not one of nl, en"),
        (
            {"slug": "Raadsavond Zeist"},
            "slug",
            "field 'slug': 'Raadsavond Zeist' must be lower-case letters a-z, digits and inner hyphens",
        ),
        ({"title": ""}, "title", "field 'title': is required"),
        ({"title": "!!!"}, "slug", "field 'slug': cannot be made from this title; fill one in"),
        (
            {"rsvp_deadline": "volgende week"},
            "rsvp_deadline",
            "field 'rsvp_deadline': 'volgende week' is not a date and time (YYYY-MM-DD HH:MM)",
        ),
    ],
)
def test_a_bad_field_is_named_with_the_reason(changes: dict[str, str], field: str, message: str) -> None:
    with pytest.raises(FormError) as raised:
        spec_from_form({**FORM, **changes})

    assert raised.value.field == field
    assert str(raised.value) == message


def test_slugs_are_plain_ascii_and_short() -> None:
    assert slug_for("Café über de Brug — 2025!") == "cafe-uber-de-brug-2025"
    long = slug_for("Inspiratiebijeenkomst " * 10)
    assert len(long) <= 80 and not long.endswith("-") and long.startswith("inspiratiebijeenkomst-")
    assert slug_for("???") == ""


def _event(spec: EventSpec) -> Event:
    """An unsaved event as `load_event` makes it from the spec (that part is tested with a database)."""
    event = Event(
        slug=spec.slug,
        ics_uid="uid",
        sequence=0,
        **{name: getattr(spec, name) for name in CALENDAR_FIELDS + PLAIN_FIELDS},
    )
    event.programme = [
        ProgrammeItem(
            position=index,
            starts_at=item.starts_at,
            ends_at=item.ends_at,
            title=item.title,
            speaker=item.speaker,
            organisation=item.organisation,
        )
        for index, item in enumerate(spec.programme)
    ]
    assert spec.series is not None
    event.series = Series(slug=spec.series.slug, title=spec.series.title)
    event.series_position = spec.series.position
    event.extra = {**spec.extra, "previous_meeting": {"date": "2017-12-13", "title": "Eerste bijeenkomst"}}
    return event


def test_an_event_becomes_the_tables_of_its_file_again() -> None:
    original = parse_event_file(EVENT_FILE.read_bytes())

    again = event_spec(event_tables(_event(original)))

    kept_elsewhere = {"series", "extra", "reminders"}
    for name in (f.name for f in dataclasses.fields(EventSpec)):
        if name not in kept_elsewhere:
            assert getattr(again, name) == getattr(original, name), name
    assert again.series is not None and original.series is not None
    assert (again.series.slug, again.series.title, again.series.position) == (
        "lokaal-samenspel",
        original.series.title,
        2,
    )
    assert again.extra["previous_meeting"]["date"] == "2017-12-13", "kept in extra, where load_event put it"
    assert again.reminders is None, "no rules in the tables: the event's own rules are left as they are"


def test_the_edit_form_shows_the_event_and_keeps_what_it_does_not_show() -> None:
    event = _event(parse_event_file(EVENT_FILE.read_bytes()))

    values = form_values(event)
    assert values["date"] == "2018-02-13" and values["start"] == "19:30" and values["end"] == "22:00"
    assert values["venue_name"] == "Fort Vreeswijk" and values["venue_city"] == "Nieuwegein"
    assert values["organiser_email"] == "uitnodigingen@example.org"
    assert values["capacity"] == "" and values["rsvp_deadline"] == "" and values["language"] == "nl"

    moved = spec_from_form(
        {**values, "date": "2018-02-20", "start": "20:00", "slug": "elders"}, event_tables(event)
    )
    assert moved.slug == "lokaal-samenspel-2018", "the slug names the event being edited"
    assert moved.starts_at == datetime(2018, 2, 20, 20, 0, tzinfo=AMSTERDAM)
    assert len(moved.programme) == 8 and moved.programme[0].title == "Inloop"
    assert moved.programme[0].starts_at == datetime(2018, 2, 20, 19, 0, tzinfo=AMSTERDAM), (
        "moves with the day"
    )
    assert moved.walk_in_at == datetime(2018, 2, 20, 19, 0, tzinfo=AMSTERDAM)
    assert moved.venue_lat == 52.0072 and moved.partners == ["Movisie", "Zorgbelang Gelderland/Utrecht"]
    assert moved.registration_enabled and moved.registration_closes_at == moved.starts_at
    assert moved.series is not None and moved.series.slug == "lokaal-samenspel"


def test_an_edit_that_breaks_a_kept_part_names_that_part() -> None:
    event = _event(parse_event_file(EVENT_FILE.read_bytes()))

    with pytest.raises(FormError) as raised:
        spec_from_form({**form_values(event), "start": "18:00"}, event_tables(event))

    assert raised.value.field == "", "the walk-in time is not on the form"
    assert str(raised.value) == "field 'walk_in': is after the start"
