"""Words for an event and a recipient: Dutch and English dates, salutations, and calendar links."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest

from invites.db.models import Event, Recipient
from invites.domain.errors import InputError
from invites.domain.reference import roles
from invites.messages.rendering import (
    MessageRenderer,
    TemplateSet,
    calendar_links,
    event_overrides,
    format_span,
    render,
    salutation,
)
from tests.conftest import make_recipient

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
START = datetime(2018, 2, 13, 19, 30, tzinfo=AMSTERDAM)
END = datetime(2018, 2, 13, 22, 0, tzinfo=AMSTERDAM)


def recipient(**fields: Any) -> Recipient:
    person: Recipient = make_recipient(**fields)
    return person


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


@pytest.mark.parametrize("role_key", sorted(roles()))
@pytest.mark.parametrize("language", ["nl", "en"])
def test_salutation_with_a_name_for_every_role(role_key: str, language: str) -> None:
    greeting = salutation(named(role_key), language)
    if role_key in ("mayor", "alderman"):
        assert greeting == f"{roles()[role_key].salutation(language)} Van der Berg"
    elif language == "nl":
        assert greeting == "Geachte heer/mevrouw Van der Berg"
    else:
        assert greeting == "Dear Jan van der Berg"


# --- Organiser templates: sandboxed, and their errors say where -----------------------------------------


def overridden(sources: dict[str, str], kind: str = "invitation", language: str = "nl") -> Event:
    found = event()
    found.extra = {"templates": {kind: {part: {language: text} for part, text in sources.items()}}}
    found.changed_fields = []
    return found


def test_event_overrides_pick_kind_and_language() -> None:
    found = overridden({"subject": "Kom ook!"})
    assert event_overrides(found, "invitation", "nl") == {"subject": "Kom ook!"}
    assert event_overrides(found, "invitation", "en") == {}
    assert event_overrides(found, "reminder", "nl") == {}


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ({"spam": {}}, "templates.spam"),
        ({"invitation": {"footer": {"nl": "x"}}}, "templates.invitation.footer"),
        ({"invitation": {"subject": {"de": "x"}}}, "templates.invitation.subject.de"),
        ({"invitation": {"subject": {"nl": 3}}}, "templates.invitation.subject.nl"),
        ({"invitation": "x"}, "templates.invitation"),
    ],
)
def test_malformed_overrides_name_the_field(table: dict[str, Any], field: str) -> None:
    found = event()
    found.extra = {"templates": table}
    with pytest.raises(InputError, match=f"field '{re.escape(field)}'"):
        event_overrides(found, "invitation", "nl")


def test_a_syntax_error_names_the_line() -> None:
    with pytest.raises(InputError, match=r"template event:invitation/body\.nl\.txt line 3: .*"):
        TemplateSet().get("invitation", "nl", {"text": "Beste,\n\n{% if %}\n"})


def test_a_runtime_error_names_the_line() -> None:
    templates = TemplateSet().get("invitation", "nl", {"text": "a\nb\n{{ recipient.nope }}\n"})
    with pytest.raises(InputError, match=r"event:invitation/body\.nl\.txt line 3: .*nope"):
        render(templates.text, {"recipient": {}}, "x")


def test_an_error_in_a_shared_file_names_that_file() -> None:
    templates = TemplateSet().get("invitation", "nl", {"html": '{% extends "_message.nl.html" %}'})
    with pytest.raises(InputError, match=r"template _layout\.html line 7: .*has no attribute 'title'"):
        render(templates.html, {"event": {}}, "x")


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ recipient.name.__class__.__base__.__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    ],
)
def test_the_sandbox_refuses_escapes(source: str) -> None:
    templates = TemplateSet().get("invitation", "nl", {"text": source})
    with pytest.raises(InputError, match=r"unsafe|undefined"):
        render(templates.text, {"recipient": {"name": "Jan"}}, "x")


def test_html_is_autoescaped_and_text_is_not() -> None:
    templates = TemplateSet().get("invitation", "nl", {"html": "<p>{{ v }}</p>", "text": "{{ v }}"})
    assert render(templates.html, {"v": "<b>&"}, "x") == "<p>&lt;b&gt;&amp;</p>"
    assert render(templates.text, {"v": "<b>&"}, "x") == "<b>&"


# --- Rendering once per shape gives what rendering per person gives --------------------------------------

TRICKY = [
    "{{ recipient.name | upper }} {{ recipient.name }}",
    "{% if recipient.name == 'Jan' %}Jan!{% else %}{{ recipient.name }}{% endif %}",
    "{{ recipient.name ~ '!' }} {{ recipient.name | length }} {{ recipient.name[:2] }}",
    "{{ recipient.name is string }} {{ recipient.attributes.fractie | default('geen') }}",
    "{% for key, value in recipient.attributes | dictsort %}{{ key }}={{ value }};{% endfor %}",
    "{{ recipient.name or 'onbekend' }} {{ recipient.role or 'genodigde' }}",
    "{{ recipient.name | e }} {{ '%s' | format(recipient.name) }} {{ recipient.name.split() | join('+') }}",
    "{{ recipient.attributes.zetels + 1 if recipient.attributes.zetels else 0 }}",
    '<a href="{{ links.rsvp }}" title="{{ recipient.name }}" style="color: red">{{ recipient.name }}</a>',
    '<p style="{{ recipient.name }}">x</p><!-- {{ recipient.name }} -->',
    "<{{ recipient.name }}>",
    "&{{ recipient.name }}; </{{ recipient.name }}> &a{{ recipient.name }}; <di{{ recipient.name }}>",
]
PEOPLE: list[dict[str, Any]] = [
    {"name": "Jan", "role": "burgemeester", "attributes": {"fractie": "D66", "zetels": 3}},
    {"name": "Zoë <Ĳs> & 'co' \"x\"", "role": "", "attributes": {}},
    {"name": "", "role": "raadslid", "attributes": {"fractie": ""}},
    {"name": "  odd   spacing ", "role": "x\ty", "attributes": {"zetels": None}},
    {"name": "amp", "role": "b", "attributes": {}},
    {"name": "mp", "role": "v", "attributes": {}},
]


@pytest.mark.parametrize("source", TRICKY)
def test_fast_rendering_equals_rendering_per_person(source: str) -> None:
    templates = TemplateSet().get(
        "invitation", "nl", {"subject": source, "text": source, "html": f"<html><body>{source}</body></html>"}
    )
    renderer = MessageRenderer(templates, {"event": {}}, "test")
    for person in PEOPLE:
        personal = {"recipient": person, "links": {"rsvp": "https://invites.example.org/r/a.b?x=1&y=2"}}
        try:
            expected = renderer.reference(personal)
        except InputError:
            with pytest.raises(InputError):
                renderer.fast(personal)
            continue
        assert renderer.fast(personal).finished() == expected


def test_fast_rendering_reuses_one_skeleton_per_shape() -> None:
    parts = {"subject": "{{ x }}", "text": "{{ recipient.name }}", "html": "{{ x }}"}
    templates = TemplateSet().get("invitation", "nl", parts)
    renderer = MessageRenderer(templates, {"x": "vast"}, "test")
    for name in ("Jan", "Piet", "Zoë"):
        filled = renderer.fast({"recipient": {"name": name}})
        assert not isinstance(filled.text, str)
        assert filled.finished().text == f"{name}\n"
    renderer.fast({"recipient": {"name": ""}})
    assert len(renderer._skeletons) == 2


def test_a_missing_attribute_reads_as_empty_for_every_recipient() -> None:
    from jinja2.sandbox import SandboxedEnvironment

    from invites.messages.rendering import Attributes

    template = SandboxedEnvironment().from_string("[{{ a['Dieet'] }}|{{ a.Dieet }}|{{ a['Tafel'] }}]")
    assert template.render(a=Attributes({"Tafel": "zorg"})) == "[||zorg]"


@pytest.mark.parametrize(
    ("source", "limit"),
    [
        ('{{ ("x" * 209715200)|length }}', "at most 100,000 with '*'"),
        ("{{ (209715200 * [0])|length }}", "at most 100,000 with '*'"),
        ("{{ (recipient.name * 50000)|length }}", "at most 100,000 with '*'"),
        ("{{ 10 ** 100000 }}", "at most 4,096 bits"),
        ("{{ (2 ** 4000) * (2 ** 4000) }}", "at most 4,096 bits"),
    ],
)
def test_the_sandbox_bounds_what_star_and_power_make(source: str, limit: str) -> None:
    templates = TemplateSet().get("invitation", "nl", {"text": "Beste,\n" + source})
    with pytest.raises(InputError, match=rf"event:invitation/body\.nl\.txt line 2: .*{re.escape(limit)}"):
        render(templates.text, {"recipient": {"name": "Jan"}}, "x")


def test_star_and_power_within_the_bounds_work_as_before() -> None:
    source = "{{ '-' * 20 }} {{ ('ab' * 3)|length }} {{ 3 * 'x' }} {{ 2 ** 10 }} {{ 1.5 * 2 }} {{ [0] * 2 }}"
    source += " {{ 2 ** -1 }}"
    templates = TemplateSet().get("invitation", "nl", {"text": source + "\n{{ ('x' * 100000)|length }}"})
    assert render(templates.text, {}, "x") == "-" * 20 + " 6 xxx 1024 3.0 [0, 0] 0.5\n100000"
