"""Turning an event and a recipient into words: templates, a personal salutation, Dutch and English dates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import css_inline
from babel.dates import format_date, format_time
from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateError, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from invites.errors import InputError
from invites.ics import utc_stamp
from invites.models import Event, Recipient
from invites.reference import municipality_name, roles
from invites.settings import project_dir

KINDS = (
    "invitation",
    "reminder",
    "update",
    "cancellation",
    "rsvp-confirmation",
    "registration-confirmation",
    "waitlist",
)
LANGUAGES = ("nl", "en")
# Roles addressed by their office with the surname ("Geachte burgemeester Van der Berg").
ADDRESSED_BY_OFFICE = {"mayor", "alderman"}


def format_day(moment: datetime, language: str) -> str:
    return format_date(moment.date(), "EEEE d MMMM y", locale=language)


def format_clock(moment: datetime, language: str) -> str:
    return format_time(moment, "HH.mm" if language == "nl" else "HH:mm", locale=language)


def format_span(start: datetime, end: datetime, language: str) -> str:
    """ "dinsdag 13 februari 2018, 19.30 – 22.00 uur" or "Tuesday 13 February 2018, 19:30 – 22:00"."""
    text = f"{format_day(start, language)}, {format_clock(start, language)} – {format_clock(end, language)}"
    return text + " uur" if language == "nl" else text


def surname(recipient: Recipient) -> str:
    """The surname as used after a title: a tussenvoegsel gets a capital there ("Van der Berg")."""
    if not recipient.last_name:
        return ""
    prefix = recipient.name_prefix
    return f"{prefix[:1].upper()}{prefix[1:]} {recipient.last_name}" if prefix else recipient.last_name


def salutation(recipient: Recipient, language: str) -> str:
    """The opening line's greeting, from an explicit aanhef, else the name and role, else the role alone."""
    if recipient.salutation:
        return recipient.salutation
    role = roles().get(recipient.role_key or "other") or roles()["other"]
    name = surname(recipient)
    if not name:
        if recipient.display_name:
            return f"Beste {recipient.display_name}" if language == "nl" else f"Dear {recipient.display_name}"
        return role.salutation(language)
    if role.key in ADDRESSED_BY_OFFICE:
        return f"{role.salutation(language)} {name}"
    return f"Geachte heer/mevrouw {name}" if language == "nl" else f"Dear {recipient.display_name or name}"


@dataclass(frozen=True)
class MessageTemplates:
    subject: Template
    html: Template
    text: Template


class TemplateSet:
    """The compiled email templates, loaded once per process and checked before any send starts."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or project_dir("templates") / "email"
        self.env = SandboxedEnvironment(
            loader=FileSystemLoader(str(self.root)),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )
        self._cache: dict[tuple[str, str], MessageTemplates] = {}

    def get(self, kind: str, language: str) -> MessageTemplates:
        key = (kind, language)
        if key not in self._cache:
            if kind not in KINDS:
                raise InputError(f"unknown message kind {kind!r}; one of {', '.join(KINDS)}")
            try:
                self._cache[key] = MessageTemplates(
                    subject=self.env.get_template(f"{kind}/subject.{language}.txt"),
                    html=self.env.get_template(f"{kind}/body.{language}.html"),
                    text=self.env.get_template(f"{kind}/body.{language}.txt"),
                )
            except TemplateError as exc:
                raise InputError(f"template {kind}/{language}: {_describe(exc)}") from exc
        return self._cache[key]


def _describe(exc: TemplateError) -> str:
    where = f"{getattr(exc, 'name', '') or ''} line {getattr(exc, 'lineno', '?')}: "
    return where + str(exc) if getattr(exc, "lineno", None) else str(exc)


def render(template: Template, context: dict[str, Any], what: str) -> str:
    try:
        return template.render(context)
    except TemplateError as exc:
        raise InputError(f"template {what}: {_describe(exc)}") from exc


def inline_css(html: str) -> str:
    return str(css_inline.inline(html))


def event_context(event: Event, language: str) -> dict[str, Any]:
    """What the templates know of the event, formatted for one language. Built once per campaign."""
    zone = ZoneInfo(event.timezone)
    start, end = event.starts_at.astimezone(zone), event.ends_at.astimezone(zone)
    walk_in = event.walk_in_at.astimezone(zone) if event.walk_in_at else None
    place = ", ".join(p for p in (event.venue_address, event.venue_city) if p)
    location = ", ".join(p for p in (event.venue_name, place) if p)
    if event.venue_lat is not None and event.venue_lon is not None:
        map_url = (
            f"https://www.openstreetmap.org/?mlat={event.venue_lat}&mlon={event.venue_lon}"
            f"#map=17/{event.venue_lat}/{event.venue_lon}"
        )
    else:
        map_url = "https://www.openstreetmap.org/search?" + urlencode({"query": location})
    previous = event.extra.get("previous_meeting") or {}
    previous_day = (
        format_date(datetime.fromisoformat(previous["date"]).date(), "d MMMM y", locale=language)
        if previous.get("date")
        else ""
    )
    return {
        "title": event.title,
        "subtitle": event.subtitle,
        "description": event.description,
        "paragraphs": [p.strip() for p in event.description.split("\n\n") if p.strip()],
        "day": format_day(start, language),
        "when": format_span(start, end, language),
        "start_time": format_clock(start, language),
        "end_time": format_clock(end, language),
        "walk_in_time": format_clock(walk_in, language) if walk_in else "",
        "venue_name": event.venue_name,
        "venue_address": place,
        "location": location,
        "map_url": map_url,
        "audience": event.audience_description,
        "organiser": event.organiser_name,
        "partners": event.partners,
        "price": event.price,
        "programme": [
            {
                "start": format_clock(item.starts_at.astimezone(zone), language),
                "end": format_clock(item.ends_at.astimezone(zone), language),
                "title": item.title,
                "speaker": item.speaker,
                "organisation": item.organisation,
            }
            for item in event.programme
        ],
        "previous_meeting": {"day": previous_day, "title": previous.get("title", "")}
        if previous_day
        else None,
        "cancelled": event.status == "cancelled",
        "cancel_reason": event.cancel_reason,
    }


def programme_text(event: Event, language: str) -> str:
    """The programme as plain lines, for the calendar DESCRIPTION."""
    context = event_context(event, language)
    lines = [context["when"]]
    if context["walk_in_time"]:
        lines.append(("Inloop vanaf " if language == "nl" else "Doors open at ") + context["walk_in_time"])
    lines.append("")
    lines.append("Programma:" if language == "nl" else "Programme:")
    for item in context["programme"]:
        who = f" ({item['speaker']})" if item["speaker"] else ""
        lines.append(f"{item['start']} – {item['end']}  {item['title']}{who}")
    return "\n".join(lines)


def calendar_links(event: Event, description: str) -> dict[str, str]:
    """ "Add to calendar" links for Google Calendar and Outlook.com."""
    location = ", ".join(p for p in (event.venue_name, event.venue_address, event.venue_city) if p)
    google = "https://calendar.google.com/calendar/render?" + urlencode(
        {
            "action": "TEMPLATE",
            "text": event.title,
            "dates": f"{utc_stamp(event.starts_at)}/{utc_stamp(event.ends_at)}",
            "details": description,
            "location": location,
            "ctz": event.timezone,
        },
        quote_via=quote,
    )
    outlook = "https://outlook.live.com/calendar/0/deeplink/compose?" + urlencode(
        {
            "path": "/calendar/action/compose",
            "rru": "addevent",
            "subject": event.title,
            "startdt": event.starts_at.isoformat(),
            "enddt": event.ends_at.isoformat(),
            "location": location,
            "body": description,
        },
        quote_via=quote,
    )
    return {"google": google, "outlook": outlook}


def recipient_context(recipient: Recipient, language: str) -> dict[str, Any]:
    role = roles().get(recipient.role_key or "")
    return {
        "salutation": salutation(recipient, language),
        "name": recipient.display_name,
        "first_name": recipient.first_name,
        "last_name": recipient.last_name,
        "email": recipient.email,
        "role": role.label(language) if role else recipient.role_label,
        "municipality": municipality_name(recipient.municipality_code),
        "organisation": recipient.organisation,
        "attributes": dict(recipient.attributes or {}),
    }
