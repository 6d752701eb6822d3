"""Turning an event and a recipient into words: templates, a personal salutation, Dutch and English dates.

Every message is rendered in Jinja2's SandboxedEnvironment: the organiser may override any template from
the event file, so templates are untrusted; `*` and `**` are bounded there too (MAX_REPEATED,
MAX_INTEGER_BITS). A `MessageRenderer` renders one kind in one language for many recipients. `reference`
renders the templates for one person, as plainly as can be. `fast` gives the same text: it renders the
templates once per *shape* of the personal data (which personal values are empty), with stand-ins where
the personal values go, inlines the CSS once, and then only fills the holes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, Protocol
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import css_inline
from babel.dates import format_date, format_time
from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateSyntaxError, select_autoescape
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from invites.domain.errors import InputError
from invites.domain.reference import LANGUAGES, Municipalities, roles
from invites.messages.ics import utc_stamp
from invites.settings import project_dir

if TYPE_CHECKING:
    from invites.db.models import Event

KINDS = (
    "invitation",
    "reminder",
    "update",
    "cancellation",
    "rsvp-confirmation",
    "registration-confirmation",
    "waitlist",
)
# The parts of a message as an event file names them, and the template file each one overrides.
PARTS = {"subject": "subject.{lang}.txt", "html": "body.{lang}.html", "text": "body.{lang}.txt"}
# Roles addressed by their office with the surname ("Geachte burgemeester Van der Berg").
ADDRESSED_BY_OFFICE = {"mayor", "alderman"}
# What an update says changed, per field that raised the calendar SEQUENCE.
CHANGE_WORDS = {
    "nl": {"starts_at": "tijd", "ends_at": "tijd", "venue_name": "locatie", "venue_address": "locatie"},
    "en": {"starts_at": "time", "ends_at": "time", "venue_name": "venue", "venue_address": "venue"},
}
CHANGE_WORDS["nl"]["venue_city"] = CHANGE_WORDS["nl"]["venue_name"]
CHANGE_WORDS["en"]["venue_city"] = CHANGE_WORDS["en"]["venue_name"]


def format_day(moment: datetime, language: str) -> str:
    return format_date(moment.date(), "EEEE d MMMM y", locale=language)


def format_clock(moment: datetime, language: str) -> str:
    return format_time(moment, "HH.mm" if language == "nl" else "HH:mm", locale=language)


def format_span(start: datetime, end: datetime, language: str) -> str:
    """ "dinsdag 13 februari 2018, 19.30 – 22.00 uur" or "Tuesday 13 February 2018, 19:30 – 22:00"."""
    text = f"{format_day(start, language)}, {format_clock(start, language)} – {format_clock(end, language)}"
    return text + " uur" if language == "nl" else text


def join_words(words: list[str], language: str) -> str:
    """ "tijd en locatie", "time, venue and programme"."""
    if len(words) < 2:
        return "".join(words)
    return f"{', '.join(words[:-1])} {'en' if language == 'nl' else 'and'} {words[-1]}"


class Person(Protocol):
    """What a message reads of its recipient: a Recipient, or the plain row a delivery batch loads."""

    @property
    def id(self) -> int: ...
    @property
    def email(self) -> str: ...
    @property
    def first_name(self) -> str: ...
    @property
    def name_prefix(self) -> str: ...
    @property
    def last_name(self) -> str: ...
    @property
    def display_name(self) -> str: ...
    @property
    def salutation(self) -> str: ...
    @property
    def role_key(self) -> str | None: ...
    @property
    def role_label(self) -> str: ...
    @property
    def municipality_code(self) -> str | None: ...
    @property
    def organisation(self) -> str: ...
    @property
    def language(self) -> str: ...
    @property
    def attributes(self) -> dict[str, Any]: ...


def surname(recipient: Person) -> str:
    """The surname as used after a title: a tussenvoegsel gets a capital there ("Van der Berg")."""
    if not recipient.last_name:
        return ""
    prefix = recipient.name_prefix
    return f"{prefix[:1].upper()}{prefix[1:]} {recipient.last_name}" if prefix else recipient.last_name


def salutation(recipient: Person, language: str) -> str:
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


# --- Templates --------------------------------------------------------------------------------------------


class _Hole:
    """Stands in for one personal value while a template is rendered once for many recipients.

    Printing it (`{{ value }}`) leaves a marker; testing it (`{% if value %}`) is true, as every value that
    gets a hole is non-empty. Anything else a template might do with the value (compare it, call a method,
    filter it, take its length) raises `_NeedsTheValue`, and that template is then rendered per recipient.
    """

    __slots__ = ("marker",)

    def __init__(self, index: int) -> None:
        self.marker = f"\ue000{index}\ue001"

    def __bool__(self) -> bool:
        return True

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise _NeedsTheValue

    __str__ = __repr__ = __format__ = __html__ = __len__ = __iter__ = __contains__ = _refuse
    __getattr__ = __getitem__ = __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __hash__ = _refuse
    __int__ = __float__ = __index__ = __complex__ = __reversed__ = __call__ = _refuse


class _NeedsTheValue(Exception):
    """A template did more with a personal value than print or test it."""


def _finalize(value: Any) -> Any:
    return value.marker if type(value) is _Hole else value


def _is_string(value: Any) -> bool:
    return isinstance(value, str | _Hole)


# What `*` and `**` may make in a template: the sandbox stops what it can see is unsafe, not what is merely
# big, and `{{ ("x" * 209715200)|length }}` would allocate 200 MB in the web process or the worker.
MAX_REPEATED = 100_000  # characters or items of a text or list repeated with `*`
MAX_INTEGER_BITS = 4_096  # about 1,233 digits: the largest number `*` or `**` may make


def _repeated_length(left: Any, right: Any) -> int | None:
    """The length of `left * right` when it repeats a text or list (either way round), else None."""
    for sequence, times in ((left, right), (right, left)):
        if isinstance(sequence, str | bytes | list | tuple) and isinstance(times, int):
            return len(sequence) * max(times, 0)
    return None


def _integer_bits(operator: str, left: Any, right: Any) -> int | None:
    """An upper bound of the bits of `left * right` or `left ** right` for integers, else None."""
    if not (isinstance(left, int) and isinstance(right, int)):
        return None
    if operator == "*":
        return left.bit_length() + right.bit_length()
    if right < 0 or abs(left) < 2:
        return 0
    return (abs(left).bit_length()) * right


class _LimitedSandbox(SandboxedEnvironment):
    """Jinja2's sandbox, with `*` and `**` checked before they run (an intercepted operator is also never
    folded at compile time, so a constant expression cannot allocate while the template compiles)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        length = _repeated_length(left, right) if operator == "*" else None
        if length is not None and length > MAX_REPEATED:
            raise SecurityError(
                f"'*' would make {length:,} characters or items; a template may make at most"
                f" {MAX_REPEATED:,} with '*'"
            )
        bits = _integer_bits(operator, left, right)
        if bits is not None and bits > MAX_INTEGER_BITS:
            raise SecurityError(
                f"'{operator}' would make a number of about {bits:,} bits; a template may make at most"
                f" {MAX_INTEGER_BITS:,} bits (about 1,233 digits)"
            )
        return super().call_binop(context, operator, left, right)


@dataclass(frozen=True)
class MessageTemplates:
    subject: Template
    html: Template
    text: Template
    names: tuple[str, str, str]


class TemplateSet:
    """The compiled email templates, loaded once per process and checked before any send starts."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or project_dir("templates") / "email"
        self.env = _LimitedSandbox(
            loader=FileSystemLoader(str(self.root)),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            finalize=_finalize,
        )
        self.env.tests["string"] = _is_string
        self._cache: dict[tuple[str, str], MessageTemplates] = {}

    def get(self, kind: str, language: str, overrides: Mapping[str, str] | None = None) -> MessageTemplates:
        """The templates of one kind in one language; `overrides` (part -> source) come from the event."""
        if kind not in KINDS:
            raise InputError(f"unknown message kind {kind!r}; one of {', '.join(KINDS)}")
        if language not in LANGUAGES:
            raise InputError(f"unknown language {language!r}; one of {', '.join(LANGUAGES)}")
        if not overrides and (kind, language) in self._cache:
            return self._cache[(kind, language)]
        compiled: dict[str, Template] = {}
        names: list[str] = []
        for part, pattern in PARTS.items():
            name = f"{kind}/{pattern.format(lang=language)}"
            source = (overrides or {}).get(part)
            try:
                if source is None:
                    compiled[part] = self.env.get_template(name)
                else:
                    name = f"event:{name}"
                    code = self.env.compile(source, name=name, filename=name)
                    compiled[part] = self.env.template_class.from_code(
                        self.env, code, self.env.make_globals(None)
                    )
            except Exception as exc:  # an organiser's template may fail in any way; say where
                raise template_error(exc, name) from exc
            names.append(name)
        templates = MessageTemplates(
            compiled["subject"], compiled["html"], compiled["text"], (names[0], names[1], names[2])
        )
        if not overrides:
            self._cache[(kind, language)] = templates
        return templates


def event_overrides(event: Event, kind: str, language: str) -> dict[str, str]:
    """The template sources an event file sets for one kind and language: `[templates.KIND.PART] LANG = "…"`.

    Raises InputError naming the field when the table is malformed.
    """
    table = (event.extra or {}).get("templates") or {}
    if not isinstance(table, dict):
        raise InputError("field 'templates': must be a table of message kinds")
    for key, parts in table.items():
        if key not in KINDS:
            raise InputError(f"field 'templates.{key}': unknown message kind; one of {', '.join(KINDS)}")
        if not isinstance(parts, dict):
            raise InputError(f"field 'templates.{key}': must be a table of parts")
        for part, languages in parts.items():
            if part not in PARTS:
                raise InputError(f"field 'templates.{key}.{part}': unknown part; one of {', '.join(PARTS)}")
            if not isinstance(languages, dict):
                raise InputError(f"field 'templates.{key}.{part}': must be a table of languages")
            for lang, source in languages.items():
                if lang not in LANGUAGES or not isinstance(source, str):
                    raise InputError(f"field 'templates.{key}.{part}.{lang}': must be nl or en, with text")
    found = table.get(kind) or {}
    return {part: languages[language] for part, languages in found.items() if language in languages}


def template_error(exc: BaseException, what: str) -> InputError:
    """An InputError that names the template and line where Jinja knows them, and the cause."""
    name: str | None = None
    line: int | None = None
    if isinstance(exc, TemplateSyntaxError):
        name, line, cause = exc.name or exc.filename, exc.lineno, exc.message or str(exc)
    else:
        # A runtime error: Jinja rewrites the traceback so that template frames carry template lines.
        tb: TracebackType | None = exc.__traceback__
        while tb is not None:
            if "__jinja_exception__" in tb.tb_frame.f_globals:
                name, line = tb.tb_frame.f_code.co_filename, tb.tb_lineno
            tb = tb.tb_next
        jinja = type(exc).__module__.startswith("jinja2")
        cause = str(exc) if jinja and str(exc) else f"{type(exc).__name__}: {exc}"
    where = _short(name) if name else what
    return InputError(f"template {where}{f' line {line}' if line else ''}: {cause}")


def _short(name: str) -> str:
    marker = "/templates/email/"
    return name.split(marker, 1)[1] if marker in name else name


def render(template: Template, context: Mapping[str, Any], what: str) -> str:
    try:
        return template.render(context)
    except Exception as exc:  # an organiser's template may fail in any way; say where
        raise template_error(exc, what) from exc


_INLINER = css_inline.CSSInliner()


def inline_css(html: str) -> str:
    return str(_INLINER.inline(html))


def _lines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def finish_subject(text: str) -> str:
    return " ".join(text.split())


def finish_text(text: str) -> str:
    return _lines(text).strip() + "\n"


def finish_html(html: str) -> str:
    return _lines(inline_css(html))


# --- What the templates know ------------------------------------------------------------------------------


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
    words = CHANGE_WORDS[language]
    changes = list(dict.fromkeys(words[f] for f in event.changed_fields or [] if f in words))
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
        "changes": join_words(changes, language),
    }


def programme_text(event: Event, language: str) -> str:
    """The programme and the walk-in time as plain lines, for the calendar DESCRIPTION."""
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


class Attributes(dict[str, Any]):
    """The import's extra columns. A column one list had and another lacks reads as empty, so a template
    that uses it cannot fail for some recipients halfway through a campaign."""

    def __missing__(self, key: str) -> str:
        return ""


def recipient_context(recipient: Person, language: str, places: Municipalities) -> dict[str, Any]:
    """What the templates know of the person: the personal values, with the import's extra columns."""
    role = roles().get(recipient.role_key or "")
    return {
        "salutation": salutation(recipient, language),
        "name": recipient.display_name,
        "first_name": recipient.first_name,
        "last_name": recipient.last_name,
        "email": recipient.email,
        "role": role.label(language) if role else recipient.role_label,
        "municipality": places.name(recipient.municipality_code),
        "organisation": recipient.organisation,
        "attributes": Attributes(recipient.attributes or {}),
    }


# --- Rendering once per shape -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedText:
    subject: str
    text: str
    html: str


def _plain(value: str) -> bool:
    # A value that survives every finishing step unchanged (stripping, folding whitespace, HTML parsing).
    return value.isprintable() and value == value.strip() and "  " not in value


def _html_text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _html_attribute(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;")


def _same(value: str) -> str:
    return value


_MARKER = re.compile("\ue000(\\d+)\ue001")
_OPEN_BEFORE = re.compile(r"(?:&lt;[/!?]?|&amp;#?)[A-Za-z0-9]*\Z")


class Skeleton:
    """One finished part with holes; `fill` puts a recipient's values in, escaped for where each hole is."""

    def __init__(self, finished: str, escapes: list[Callable[[str], str]]) -> None:
        pieces = _MARKER.split(finished)
        self.chunks = pieces[0::2]
        self.slots = [int(p) for p in pieces[1::2]]
        self.escapes = escapes

    def fill(self, values: list[str]) -> str:
        chunks = self.chunks
        out = [chunks[0]]
        for position, (slot, escape) in enumerate(zip(self.slots, self.escapes, strict=True)):
            out.append(escape(values[slot]))
            out.append(chunks[position + 1])
        return "".join(out)


# The HTML scanner's states: in each, what it looks for next (a marker always), and where each find leads.
_HTML_STOPS = {
    "text": re.compile("\ue000|<!--|<"),
    "tag": re.compile('\ue000|[">]'),
    "value": re.compile('\ue000|"'),
    "comment": re.compile("\ue000|-->"),
}
_HTML_NEXT = {
    ("text", "<!--"): "comment",
    ("text", "<"): "tag",
    ("tag", '"'): "value",
    ("tag", ">"): "text",
    ("value", '"'): "tag",
    ("comment", "-->"): "text",
}
_HTML_ESCAPES: dict[str, Callable[[str], str]] = {"text": _html_text, "value": _html_attribute}


def _html_escapes(html: str) -> list[Callable[[str], str]] | None:
    """For each marker in serialised HTML: escaped as text or as a quoted attribute value. None when a
    marker sits anywhere else (a tag or attribute name, a comment), where filling in would not be exact."""
    escapes: list[Callable[[str], str]] = []
    state = "text"
    i = 0
    # From one find to the next rather than a character at a time: the regular expressions skip the rest.
    while found := _HTML_STOPS[state].search(html, i):
        stop, i = found[0], found.start()
        if stop != "\ue000":
            state = _HTML_NEXT[state, stop]
            # A comment ends after its "-->"; any other find is one character, "<!--" counted as its "<".
            i = found.end() if stop == "-->" else i + 1
            continue
        escape = _HTML_ESCAPES.get(state)
        # After "<" or "&" (and letters) a value could finish a tag or an entity: render per person.
        if escape is None or _OPEN_BEFORE.search(html, max(0, i - 48), i):
            return None
        escapes.append(escape)
        i = html.index("\ue001", i) + 1
    return escapes


def _stencil(tree: dict[str, Any], values: list[str], shape: list[Any]) -> dict[str, Any]:
    """`tree` with a hole for every non-empty text; `shape` records what the holes cannot stand for:
    which keys there are, which are empty, and every value that is not text."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if type(value) is str and value:
            values.append(value)
            shape.append(key)
            out[key] = _Hole(len(values) - 1)
        elif isinstance(value, dict):
            shape.append((key, "{"))
            out[key] = _stencil(value, values, shape)
            shape.append("}")
        else:
            shape.append((key, value if isinstance(value, str | int | float | None) else repr(value)))
            out[key] = value
    return out


def _unstencil(tree: Any, values: list[str]) -> Any:
    if isinstance(tree, dict):
        return {key: _unstencil(value, values) for key, value in tree.items()}
    if type(tree) is _Hole:
        return values[int(tree.marker[1:-1])]
    return tree


@dataclass(frozen=True)
class Filled:
    """A message's texts as skeletons plus the values for their holes; a part rendered the plain way (when
    the skeleton could not stand for it) is a whole string."""

    subject: str
    text: Skeleton | str
    html: Skeleton | str
    values: list[str]

    def finished(self) -> RenderedText:
        return RenderedText(
            self.subject,
            self.text if isinstance(self.text, str) else self.text.fill(self.values),
            self.html if isinstance(self.html, str) else self.html.fill(self.values),
        )


class MessageRenderer:
    """One kind of message in one language for one event: `fixed` is what every recipient shares."""

    def __init__(self, templates: MessageTemplates, fixed: Mapping[str, Any], what: str) -> None:
        self.templates = templates
        self.fixed = dict(fixed)
        self.what = what
        self._skeletons: dict[tuple[Any, ...], tuple[Skeleton, Skeleton, Skeleton] | None] = {}

    def _context(self, personal: Mapping[str, Any], raw: Mapping[str, Any]) -> dict[str, Any]:
        context = {**self.fixed, **raw, **personal}
        if "links" in self.fixed and "links" in personal:
            context["links"] = {**self.fixed["links"], **personal["links"]}
        return context

    def reference(self, personal: Mapping[str, Any], raw: Mapping[str, Any] | None = None) -> RenderedText:
        """Each template rendered for this person and finished: the plain way, and the measure of `fast`.

        `personal` holds the person's texts; `raw` holds values templates branch on (an answer)."""
        context = self._context(personal, raw or {})
        t = self.templates
        return RenderedText(
            subject=finish_subject(render(t.subject, context, t.names[0])),
            text=finish_text(render(t.text, context, t.names[2])),
            html=finish_html(render(t.html, context, t.names[1])),
        )

    def fast(self, personal: Mapping[str, Any], raw: Mapping[str, Any] | None = None) -> Filled:
        """The same texts as `reference`, as this shape's skeletons and the person's values."""
        raw = raw or {}
        values: list[str] = []
        shape: list[Any] = [(key, repr(value)) for key, value in raw.items()]
        stencilled = _stencil(dict(personal), values, shape)
        key = tuple(shape)
        if key not in self._skeletons:
            self._skeletons[key] = self._build(stencilled, raw, len(values))
        skeletons = self._skeletons[key]
        if skeletons is None or not all(map(_plain, values)):
            plain = self.reference(personal, raw)
            return Filled(plain.subject, plain.text, plain.html, [])
        subject, text, html = skeletons
        return Filled(subject.fill(values), text, html, values)

    def _build(
        self, stencilled: dict[str, Any], raw: Mapping[str, Any], count: int
    ) -> tuple[Skeleton, Skeleton, Skeleton] | None:
        context = self._context(stencilled, raw)
        t = self.templates
        try:
            subject = finish_subject(t.subject.render(context))
            text = finish_text(t.text.render(context))
            html = finish_html(t.html.render(context))
        except Exception:  # _NeedsTheValue, or an error that the reference path will report with its line
            return None
        escapes = _html_escapes(html)
        if escapes is None:
            return None
        skeletons = (
            Skeleton(subject, [_same] * len(_MARKER.findall(subject))),
            Skeleton(text, [_same] * len(_MARKER.findall(text))),
            Skeleton(html, escapes),
        )
        # Prove the skeletons on values that need escaping, against the plain rendering of the same values.
        probes = [f"a{index}<&\"' Zoë>" for index in range(count)]
        try:
            expected = self.reference(_unstencil(stencilled, probes), raw)
        except InputError:
            return None
        filled = RenderedText(*(skeleton.fill(probes) for skeleton in skeletons))
        return skeletons if filled == expected else None
