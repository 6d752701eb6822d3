"""Words for an event and a recipient: Dutch and English dates, salutations, and calendar links."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest

from invites.errors import InputError
from invites.models import Event, Recipient
from invites.reference import roles
from invites.rendering import TemplateSet, calendar_links, format_span, salutation

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
START = datetime(2018, 2, 13, 19, 30, tzinfo=AMSTERDAM)
END = datetime(2018, 2, 13, 22, 0, tzinfo=AMSTERDAM)


def recipient(**fields: Any) -> Recipient:
    values: dict[str, Any] = {
        "email": "jan@example.org",
        "email_key": "jan@example.org",
        "first_name": "",
        "name_prefix": "",
        "last_name": "",
        "display_name": "",
        "salutation": "",
        "role_key": None,
        "role_label": "",
        "municipality_code": None,
        "organisation": "",
        "language": "nl",
        "attributes": {},
        "tags": [],
    }
    values.update(fields)
    return Recipient(**values)


def named(role_key: str | None) -> Recipient:
    return recipient(
        first_name="Jan",
        name_prefix="van der",
        last_name="Berg",
        display_name="Jan van der Berg",
        role_key=role_key,
    )


def test_format_span_dutch() -> None:
    assert format_span(START, END, "nl") == "dinsdag 13 februari 2018, 19.30 – 22.00 uur"


def test_format_span_english() -> None:
    assert format_span(START, END, "en") == "Tuesday 13 February 2018, 19:30 – 22:00"


def test_format_span_uses_the_given_local_time() -> None:
    summer = datetime(2018, 6, 5, 9, 5, tzinfo=AMSTERDAM)
    assert (
        format_span(summer, summer.replace(hour=17, minute=0), "nl")
        == "dinsdag 5 juni 2018, 09.05 – 17.00 uur"
    )


def test_explicit_salutation_wins() -> None:
    person = named("mayor")
    person.salutation = "Hooggeachte heer Van der Berg"
    assert salutation(person, "nl") == "Hooggeachte heer Van der Berg"
    assert salutation(person, "en") == "Hooggeachte heer Van der Berg"


@pytest.mark.parametrize(
    ("role_key", "language", "expected"),
    [
        ("mayor", "nl", "Geachte burgemeester Van der Berg"),
        ("mayor", "en", "Dear Mayor Van der Berg"),
        ("alderman", "nl", "Geachte wethouder Van der Berg"),
        ("alderman", "en", "Dear Alderman Van der Berg"),
        ("council_member", "nl", "Geachte heer/mevrouw Van der Berg"),
        ("clerk", "nl", "Geachte heer/mevrouw Van der Berg"),
        (None, "nl", "Geachte heer/mevrouw Van der Berg"),
        ("council_member", "en", "Dear Jan van der Berg"),
    ],
)
def test_salutation_with_a_name(role_key: str | None, language: str, expected: str) -> None:
    assert salutation(named(role_key), language) == expected


def test_surname_without_prefix_is_unchanged() -> None:
    person = recipient(first_name="Stijn", last_name="Berg", display_name="Stijn Berg", role_key="mayor")
    assert salutation(person, "nl") == "Geachte burgemeester Berg"


@pytest.mark.parametrize("role_key", sorted(roles()))
@pytest.mark.parametrize("language", ["nl", "en"])
def test_salutation_without_a_name_comes_from_roles_csv(role_key: str, language: str) -> None:
    assert salutation(recipient(role_key=role_key), language) == roles()[role_key].salutation(language)


@pytest.mark.parametrize(
    ("role_key", "language", "expected"),
    [
        ("council_member", "nl", "Geacht raadslid"),
        ("council_member", "en", "Dear Councillor"),
        ("mayor", "nl", "Geachte burgemeester"),
        ("mayor", "en", "Dear Mayor"),
        ("secretary", "nl", "Geachte gemeentesecretaris"),
        (None, "nl", "Geachte heer/mevrouw"),
        ("unknown-role", "en", "Dear Sir or Madam"),
    ],
)
def test_salutation_without_a_name(role_key: str | None, language: str, expected: str) -> None:
    assert salutation(recipient(role_key=role_key), language) == expected


def test_salutation_with_only_a_display_name() -> None:
    person = recipient(display_name="Zoë Ĳsbrandt", role_key="council_member")
    assert salutation(person, "nl") == "Beste Zoë Ĳsbrandt"
    assert salutation(person, "en") == "Dear Zoë Ĳsbrandt"


def event() -> Event:
    return Event(
        title="Inspiratiebijeenkomst Lokaal samenspel",
        starts_at=START,
        ends_at=END,
        timezone="Europe/Amsterdam",
        venue_name="Fort Vreeswijk",
        venue_address="Fort Vreeswijk 1",
        venue_city="Nieuwegein",
    )


def query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query, strict_parsing=True).items()}


def test_google_calendar_link() -> None:
    links = calendar_links(event(), "Programma:\n19.30 Welkom & koffie")
    assert links["google"].startswith("https://calendar.google.com/calendar/render?")
    assert "dates=20180213T183000Z%2F20180213T210000Z" in links["google"]
    fields = query(links["google"])
    assert fields["action"] == "TEMPLATE"
    assert fields["text"] == "Inspiratiebijeenkomst Lokaal samenspel"
    assert fields["dates"] == "20180213T183000Z/20180213T210000Z"
    assert fields["details"] == "Programma:\n19.30 Welkom & koffie"
    assert fields["location"] == "Fort Vreeswijk, Fort Vreeswijk 1, Nieuwegein"
    assert fields["ctz"] == "Europe/Amsterdam"


def test_outlook_calendar_link() -> None:
    links = calendar_links(event(), "Programma")
    assert links["outlook"].startswith("https://outlook.live.com/calendar/0/deeplink/compose?")
    fields = query(links["outlook"])
    assert fields["subject"] == "Inspiratiebijeenkomst Lokaal samenspel"
    assert fields["rru"] == "addevent"
    # The offset's "+" must survive the query string: a bare "+" would be read as a space.
    assert datetime.fromisoformat(fields["startdt"]) == datetime(2018, 2, 13, 18, 30, tzinfo=UTC)
    assert datetime.fromisoformat(fields["enddt"]) == datetime(2018, 2, 13, 21, 0, tzinfo=UTC)
    assert fields["location"] == "Fort Vreeswijk, Fort Vreeswijk 1, Nieuwegein"


def test_unknown_message_kind_is_an_input_error() -> None:
    with pytest.raises(InputError, match="unknown message kind 'spam'"):
        TemplateSet().get("spam", "nl")
