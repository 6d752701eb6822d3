"""Event definition files: the example meeting read whole, and every kind of mistake named by its field."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from invites.domain.errors import InputError
from invites.domain.eventfile import EventSpec, parse_event_file
from invites.domain.eventform import FormError, spec_from_form
from tests.conftest import EVENT_FILE

AMSTERDAM = ZoneInfo("Europe/Amsterdam")

MINIMAL = """\
slug = "test-meeting"
title = "Testbijeenkomst"
date = 2018-02-13
start = "19:30"
end = "22:00"
"""


def parse(text: str) -> EventSpec:
    return parse_event_file(text.encode("utf-8"), "meeting.toml")


def with_top(**lines: str) -> str:
    """MINIMAL with top-level keys replaced (or added); an empty value removes the key."""
    kept = [line for line in MINIMAL.splitlines() if line.split(" = ", 1)[0] not in lines]
    added = [f"{key} = {value}" for key, value in lines.items() if value]
    return "\n".join(kept + added) + "\n"


def fails(text: str) -> str:
    with pytest.raises(InputError) as caught:
        parse(text)
    message = str(caught.value)
    assert message.startswith("meeting.toml: "), message
    return message


@pytest.fixture(scope="module")
def example() -> EventSpec:
    return parse_event_file(EVENT_FILE.read_bytes(), str(EVENT_FILE))


def test_example_title_and_language(example: EventSpec) -> None:
    assert example.slug == "lokaal-samenspel-2018"
    assert example.title == "Inspiratiebijeenkomst Lokaal samenspel in verandering"
    assert example.subtitle.startswith("Tweede bijeenkomst van het tweeluik")
    assert example.language == "nl"
    assert example.timezone == "Europe/Amsterdam"


def test_example_times_are_local_and_aware(example: EventSpec) -> None:
    assert example.starts_at == datetime(2018, 2, 13, 19, 30, tzinfo=AMSTERDAM)
    assert example.ends_at == datetime(2018, 2, 13, 22, 0, tzinfo=AMSTERDAM)
    assert example.starts_at.astimezone(UTC) == datetime(2018, 2, 13, 18, 30, tzinfo=UTC)
    assert example.ends_at.astimezone(UTC) == datetime(2018, 2, 13, 21, 0, tzinfo=UTC)
    assert example.starts_at.utcoffset() == timedelta(hours=1)
    assert example.walk_in_at == datetime(2018, 2, 13, 19, 0, tzinfo=AMSTERDAM)


def test_example_venue(example: EventSpec) -> None:
    assert example.venue_name == "Fort Vreeswijk"
    assert example.venue_address == "Fort Vreeswijk 1"
    assert example.venue_city == "Nieuwegein"
    assert example.venue_postcode == ""
    assert example.venue_lat == pytest.approx(52.0072)
    assert example.venue_lon == pytest.approx(5.0953)


def test_example_description_joins_continued_lines_and_keeps_paragraphs(example: EventSpec) -> None:
    assert example.description.startswith("Wilt u in uw eigen gemeente")
    assert "ontwikkelen? Kom dan naar het tweede deel" in example.description
    assert not example.description.endswith("\n")
    assert len(example.description.split("\n\n")) == 3
    assert "zorgcoöperaties" in example.description


def test_example_programme(example: EventSpec) -> None:
    programme = example.programme
    assert len(programme) == 8
    assert [(p.starts_at.time(), p.ends_at.time()) for p in programme[:2]] == [
        (time(19, 0), time(19, 30)),
        (time(19, 30), time(19, 35)),
    ]
    assert programme[0].title == "Inloop"
    assert programme[-1].title == "Afsluiting en drankje"
    assert programme[-1].ends_at == datetime(2018, 2, 13, 22, 30, tzinfo=AMSTERDAM)
    assert [p.speaker for p in programme if p.speaker] == [
        "Saskia van Grinsven",
        "Monique de Beer",
        "Frans van Eck",
        "Imke Bardoel",
    ]
    assert programme[1].organisation == "Movisie"
    assert all(p.starts_at.tzinfo == AMSTERDAM for p in programme)


def test_example_organiser_audience_and_registration(example: EventSpec) -> None:
    assert example.organiser_name == "VNG afdeling Utrecht"
    assert example.organiser_email == "uitnodigingen@example.org"
    assert example.partners == ["Movisie", "Zorgbelang Gelderland/Utrecht"]
    assert example.audience_roles == [
        "mayor",
        "alderman",
        "council_member",
        "secretary",
        "clerk",
        "policy_officer",
    ]
    assert example.audience_description.startswith("Deze bijeenkomst is bedoeld voor alle burgemeesters")
    assert example.registration_enabled is True
    assert example.price == "gratis"
    assert example.registration_opens_at is None
    assert example.registration_closes_at == example.starts_at
    assert example.capacity is None
    assert example.rsvp_deadline is None
    assert example.extra == {}


def test_example_series(example: EventSpec) -> None:
    series = example.series
    assert series is not None
    assert series.slug == "lokaal-samenspel"
    assert series.title.startswith("Tweeluik vernieuwing")
    assert series.position == 2
    assert series.previous_date == date(2017, 12, 13)
    assert series.previous_title.startswith("Eerste bijeenkomst: werkwijze en cultuur")


def test_minimal_file_gets_defaults() -> None:
    spec = parse(MINIMAL)
    assert spec.language == "nl"
    assert spec.timezone == "Europe/Amsterdam"
    assert spec.starts_at == datetime(2018, 2, 13, 19, 30, tzinfo=AMSTERDAM)
    assert spec.walk_in_at is None
    assert spec.series is None
    assert spec.programme == []
    assert spec.partners == []
    assert spec.registration_enabled is False


def test_times_may_be_written_with_a_dot_or_as_toml_times() -> None:
    spec = parse(with_top(start='"19.30"', end="22:00:00"))
    assert spec.starts_at.time() == time(19, 30)
    assert spec.ends_at.time() == time(22, 0)


def test_other_time_zone_is_applied() -> None:
    spec = parse(with_top(timezone='"America/New_York"'))
    assert spec.starts_at.astimezone(UTC) == datetime(2018, 2, 14, 0, 30, tzinfo=UTC)


def test_local_datetimes_take_the_event_zone_and_offsets_are_kept() -> None:
    text = with_top(rsvp_deadline="2018-02-06T17:00:00") + (
        "[registration]\nenabled = true\nopens = 2018-01-01\ncloses = 2018-02-10T12:00:00Z\n"
    )
    spec = parse(text)
    assert spec.rsvp_deadline == datetime(2018, 2, 6, 17, 0, tzinfo=AMSTERDAM)
    assert spec.registration_opens_at == datetime(2018, 1, 1, 0, 0, tzinfo=AMSTERDAM)
    assert spec.registration_closes_at == datetime(2018, 2, 10, 12, 0, tzinfo=UTC)


def test_unknown_top_level_keys_are_kept_in_extra() -> None:
    spec = parse(MINIMAL + 'dress_code = "informeel"\n[questions]\ndiet = "Dieetwensen?"\n')
    assert spec.extra == {"dress_code": "informeel", "questions": {"diet": "Dieetwensen?"}}


def test_whole_number_coordinates_become_floats() -> None:
    spec = parse(MINIMAL + "[venue]\nlat = 52\nlon = 5\n")
    assert spec.venue_lat == 52.0
    assert isinstance(spec.venue_lat, float)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (with_top(end='"19:00"'), "field 'end': 19:00 is not after the start 19:30"),
        (with_top(end='"19:30"'), "field 'end'"),
        (with_top(end='"laat"'), "field 'end': 'laat' is not a time of day"),
        (with_top(end=""), "field 'end': is required"),
        (with_top(start="19"), "field 'start'"),
        (with_top(date=""), "field 'date': is required, as YYYY-MM-DD"),
        (with_top(date='"2018-02-13"'), "field 'date'"),
        (with_top(date="2018-02-13T19:30:00"), "field 'date'"),
        (with_top(timezone='"Mars/Olympus_Mons"'), "field 'timezone': 'Mars/Olympus_Mons' is not an IANA"),
        (with_top(timezone='"../etc/passwd"'), "field 'timezone'"),
        (with_top(timezone='""'), "field 'timezone'"),
        (with_top(slug='"Lokaal Samenspel"'), "field 'slug': 'Lokaal Samenspel' must be lower-case"),
        (with_top(slug='"lokaal_samenspel"'), "field 'slug'"),
        (with_top(slug='""'), "field 'slug'"),
        (with_top(slug=""), "field 'slug': is required"),
        (with_top(slug="12"), "field 'slug': must be text, not int"),
        (with_top(slug='"new"'), "field 'slug': 'new' is the address of a page of its own"),
        (with_top(title=""), "field 'title': is required"),
        (with_top(walk_in='"20:00"'), "field 'walk_in': is after the start"),
        (with_top(language='"de"'), "field 'language': 'de' is not one of nl, en"),
        (with_top(capacity="0"), "field 'capacity': must be at least 1"),
        (with_top(capacity="true"), "field 'capacity': must be a whole number"),
        (with_top(capacity='"veel"'), "field 'capacity'"),
        (with_top(rsvp_deadline='"morgen"'), "field 'rsvp_deadline'"),
        (with_top(venue='"Fort Vreeswijk"'), "field 'venue': must be a table"),
        (MINIMAL + '[venue]\nlat = "noord"\n', "field 'venue.lat': must be a number"),
        (MINIMAL + "[venue]\nname = 3\n", "field 'venue.name': must be text"),
        (MINIMAL + '[audience]\nroles = "mayor"\n', "field 'audience.roles'"),
        (MINIMAL + "[organiser]\npartners = [1, 2]\n", "field 'organiser.partners'"),
        (
            MINIMAL + '[organiser]\nemail = "griffie@example.nl\\r\\nBcc: iedereen@example.com"\n',
            "field 'organiser.email': must be one address on one line",
        ),
        (
            MINIMAL + '[organiser]\nemail = "griffie@example.nl\\nX-Evil: 1"\n',
            "field 'organiser.email': must be one address on one line",
        ),
        (MINIMAL + '[organiser]\nemail = "griffie"\n', "field 'organiser.email': 'griffie' is not an e-mail"),
        (
            MINIMAL + '[organiser]\nemail = "Griffie <griffie@example.nl>"\n',
            "field 'organiser.email': 'Griffie <griffie@example.nl>' is not an e-mail address",
        ),
        (MINIMAL + '[registration]\nopens = "maandag"\n', "field 'registration.opens'"),
        (MINIMAL + '[series]\ntitle = "Reeks"\n', "field 'series.slug': is required"),
        (MINIMAL + '[series]\nslug = "s"\ntitle = "S"\nposition = "twee"\n', "field 'series.position'"),
        (
            MINIMAL + '[series]\nslug = "s"\ntitle = "S"\nprevious = { date = "vorig jaar" }\n',
            "field 'series.previous.date': must be a date",
        ),
        (with_top(programme='"19:30 welkom"'), "field 'programme': must be a list"),
        (with_top(programme="[1]"), "field 'programme': item 1 must be a table"),
    ],
)
def test_mistakes_name_the_field(text: str, expected: str) -> None:
    assert expected in fails(text)


PROGRAMME = """
[[programme]]
start = "19:30"
end = "20:00"
title = "Welkom"

[[programme]]
start = {start}
end = {end}
title = {title}
"""


@pytest.mark.parametrize(
    ("start", "end", "title", "expected"),
    [
        ('"acht uur"', '"20:30"', '"Gesprek"', "field 'programme[2].start': 'acht uur' is not a time"),
        ('"20:00"', '"19:45"', '"Gesprek"', "field 'programme[2].end': is not after its start"),
        ('"20:00"', '"20:00"', '"Gesprek"', "field 'programme[2].end'"),
        ('"20:00"', '"20:30"', "42", "field 'programme[2].title': must be text"),
    ],
)
def test_programme_mistakes_name_the_item(start: str, end: str, title: str, expected: str) -> None:
    text = MINIMAL + PROGRAMME.format(start=start, end=end, title=title)
    assert expected in fails(text)


def test_programme_item_without_start_names_the_item() -> None:
    text = MINIMAL + '[[programme]]\nend = "20:00"\ntitle = "Welkom"\n'
    assert "field 'programme[1].start': is required" in fails(text)


def test_bad_toml_is_an_input_error_with_its_position() -> None:
    message = fails(MINIMAL + "subtitle = \n")
    assert "not valid TOML" in message
    assert "line 6" in message


def test_duplicate_key_is_bad_toml() -> None:
    assert "not valid TOML" in fails(MINIMAL + 'title = "Nogmaals"\n')


def test_text_that_is_not_utf8_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"meeting\.toml: not UTF-8 text \(byte \d+\)"):
        parse_event_file(MINIMAL.encode() + b'subtitle = "caf\xe9"\n', "meeting.toml")


@pytest.mark.parametrize("zone", ["Europe", "America", pytest.param("x" * 300, id="over-long")])
def test_time_zone_that_is_no_zone_file_is_an_input_error(zone: str) -> None:
    # ZoneInfo("Europe") raises IsADirectoryError and an over-long key "File name too long" (OSError):
    # neither is a ZoneInfoNotFoundError or ValueError, so the organiser would get a traceback.
    assert "field 'timezone'" in fails(with_top(timezone=f'"{zone}"'))


def test_registration_enabled_must_be_true_or_false() -> None:
    # A quoted "false" must not open registration.
    text = MINIMAL + '[registration]\nenabled = "false"\n'
    assert "field 'registration.enabled'" in fails(text)


def test_an_organiser_address_is_kept_as_written_and_may_be_left_out() -> None:
    assert (
        parse(MINIMAL + '[organiser]\nemail = " griffie@example.nl "\n').organiser_email
        == "griffie@example.nl"
    )
    assert parse(MINIMAL + '[organiser]\nname = "Griffie"\n').organiser_email == ""
    assert parse(MINIMAL).organiser_email == ""


@pytest.mark.parametrize(
    "email", ["griffie@example.nl\r\nBcc: iedereen@example.com", "griffie@example.nl\nX: 1"]
)
def test_the_event_form_refuses_an_organiser_address_with_a_line_break(email: str) -> None:
    # The form is read by the same code as a file; its error names the form's field.
    form = {
        "title": "Raadsavond",
        "date": "2025-03-04",
        "start": "19:30",
        "end": "21:45",
        "organiser_email": email,
    }
    with pytest.raises(FormError) as caught:
        spec_from_form(form)
    assert caught.value.field == "organiser_email"
    assert "field 'organiser.email': must be one address on one line" in str(caught.value)
