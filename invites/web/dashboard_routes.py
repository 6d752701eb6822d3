"""The organiser's pages about one event's audience and answers: the overview (counts, answers over time,
coverage, delivery problems, scanner opens), the segment chooser, and the attendee list.

Routes find the event, call the read models (invites.readmodels.status, invites.db.segments,
invites.readmodels.dashboard) and hand the result to a template; the segment comes from the same query
parameters as the JSON API's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from invites.db.models import Event
from invites.db.segments import UNKNOWN, coverage
from invites.domain.errors import InputError, NotFound
from invites.domain.reference import Municipalities, roles
from invites.domain.segment import Segment
from invites.messages.rendering import event_context
from invites.readmodels import dashboard
from invites.readmodels.status import attendees, timeline
from invites.services import held, review
from invites.services.events import get_event
from invites.services.rsvp import parse_answer
from invites.web.api import SegmentDep
from invites.web.auth import organiser_router
from invites.web.charts import MEASURES, Series, heat_table, stacked_bars
from invites.web.deps import RuntimeDep, SessionDep, get_runtime
from invites.web.pages import language, render, translate

router = organiser_router(include_in_schema=False)

ANSWER_SERIES = (
    ("accepted", "Komt", "#0b5cad"),
    ("tentative", "Misschien", "#8a5a00"),
    ("declined", "Komt niet", "#52606d"),
)
MEASURE_LABELS = {
    "invited": "Genodigd",
    "accepted": "Komt",
    "tentative": "Misschien",
    "declined": "Komt niet",
}
KIND_LABELS = {
    "invitation": "Uitnodiging",
    "reminder": "Herinnering",
    "update": "Wijziging",
    "cancellation": "Afgelasting",
    "rsvp-confirmation": "Bevestiging van het antwoord",
    "registration-confirmation": "Bevestiging van de aanmelding",
    "waitlist": "Wachtlijst",
}
STATUS_LABELS = {
    "failed": "Mislukt",
    "bounced": "Onbestelbaar",
    "deferred": "Uitgesteld",
    "sent": "Verzonden",
}
ANSWER_FILTERS = {
    "": "Alle antwoorden",
    "accepted": "Komt",
    "tentative": "Misschien",
    "declined": "Komt niet",
    "none": "Geen antwoord",
}


def _not_found(request: Request) -> HTMLResponse:
    return render(request, "not_found.html", {}, status_code=404)


def segment_params(segment: Segment) -> list[tuple[str, str]]:
    """The query parameters that select `segment`, as the API's segment_query reads them."""
    params = [("role", key) for key in segment.roles]
    params += [("municipality", code) for code in segment.municipalities]
    params += [("tag", tag) for tag in segment.tags]
    params += [("language", code) for code in segment.languages]
    if segment.attended_previous:
        params.append(("attended_previous", "true"))
    return params


def role_label(key: str, lang: str) -> str:
    if key == UNKNOWN:
        return translate("Onbekend", lang)
    role = roles().get(key)
    label = role.label(lang) if role else key
    return label[:1].upper() + label[1:]


def _moment(event: Event, lang: str) -> Callable[[datetime | None], str]:
    """Formats a moment in the event's own time zone, as the organiser reads it."""
    zone = ZoneInfo(event.timezone)

    def moment(value: datetime | None) -> str:
        if value is None:
            return ""
        return format_datetime(value, "d MMM y HH:mm", tzinfo=zone, locale=lang)

    return moment


def _coverage_context(
    session: Session, event: Event, segment: Segment, measure: str, lang: str, places: Municipalities
) -> dict[str, Any]:
    """The heat map of one measure, with links that switch the measure and keep the segment."""
    matrix = coverage(session, event, segment, places)
    wanted = set(event.audience_roles or [])
    shown = [r for r in matrix["roles"] if r in wanted or matrix["totals"][r]["invited"]]
    params = segment_params(segment)
    return {
        "table": heat_table(matrix, measure, shown),
        "role_labels": {key: role_label(key, lang) for key in shown},
        "measure_links": [
            (key, "?" + urlencode([*params, ("measure", key)]), MEASURE_LABELS[key]) for key in MEASURES
        ],
        "selected": int(matrix["totals"]["all"]["invited"]),
    }


def _timeline_context(session: Session, event: Event, lang: str) -> dict[str, Any]:
    days = timeline(session, event)
    for day in days:
        moment = date.fromisoformat(day["day"])
        day["label"] = format_date(moment, "d MMM", locale=lang)
        day["date"] = format_date(moment, "d MMMM y", locale=lang)
    series = [Series(key, translate(label, lang), colour) for key, label, colour in ANSWER_SERIES]
    if days:
        last = days[-1]
        description = translate(
            "Stand van de antwoorden aan het eind van elke dag waarop er iets veranderde. "
            "Op {day}: {accepted} komen, {tentative} misschien, {declined} komen niet.",
            lang,
            day=last["date"],
            accepted=last["accepted"],
            tentative=last["tentative"],
            declined=last["declined"],
        )
    else:
        description = translate("Er zijn nog geen antwoorden.", lang)
    chart = stacked_bars(
        days,
        "label",
        series,
        ident="answers-chart",
        title=translate("Antwoorden per dag", lang),
        description=description,
        x_label=translate("Dag", lang),
        y_label=translate("Aantal antwoorden", lang),
        empty_text=translate("Er zijn nog geen antwoorden.", lang),
    )
    return {"chart": chart, "days": days}


def _counts_context(session: Session, event: Event) -> dict[str, Any]:
    return {"event": event, "status": dashboard.counts(session, event)}


@router.get("/events/{slug}", response_class=HTMLResponse)
def overview(request: Request, slug: str, session: SessionDep, measure: str = "accepted") -> HTMLResponse:
    """The event's dashboard: live counts, answers over time, coverage, and what went wrong."""
    event = get_event(session, slug)
    lang = language(request)
    measure = measure if measure in MEASURES else "accepted"
    context = {
        **_counts_context(session, event),
        **_timeline_context(session, event, lang),
        **_coverage_context(session, event, Segment(), measure, lang, get_runtime(request).municipalities),
        "info": event_context(event, lang),
        "problems": dashboard.delivery_problems(session, event),
        "scanners": dashboard.scanner_opens(session, event),
        "held": held.open_held(session, event.id),
        "held_labels": {key: label for key, label in MEASURE_LABELS.items() if key != "invited"},
        "moment": _moment(event, lang),
        "kind_labels": KIND_LABELS,
        "status_labels": STATUS_LABELS,
    }
    return render(request, "dashboard.html", context)


@router.post("/events/{slug}/held/{held_id}", response_model=None)
def decide_held(
    request: Request,
    slug: str,
    held_id: int,
    session: SessionDep,
    rt: RuntimeDep,
    decision: Annotated[str, Form()] = "",
) -> Response:
    """The organiser accepts a held answer as the person's, or rejects it; then back to the overview."""
    event = get_event(session, slug)
    session.close()  # the decision is a transaction of its own (invites.services.review.decide)
    if decision not in ("accept", "reject"):
        return render(
            request,
            "error.html",
            {"message": translate("Kies aanvaarden of afwijzen.", language(request))},
            400,
        )
    organiser = getattr(request.state, "organiser", None)
    try:
        queued = review.decide(
            rt.sessions,
            rt.settings,
            event.id,
            held_id,
            decision == "accept",
            getattr(organiser, "email", ""),
            datetime.now(UTC),
        )
    except NotFound:
        return _not_found(request)
    except InputError as exc:
        return render(request, "error.html", {"message": str(exc)}, status_code=409)
    if queued:
        rt.enqueue(queued)
    return RedirectResponse(f"/events/{slug}#held", status_code=303)


@router.get("/events/{slug}/counts", response_class=HTMLResponse)
def counts(request: Request, slug: str, session: SessionDep) -> HTMLResponse:
    """The counts alone, as the fragment the overview replaces itself with every few seconds."""
    event = get_event(session, slug)
    return render(request, "_counts.html", _counts_context(session, event))


def _segment_choices(
    session: Session, event: Event, segment: Segment, lang: str, places: Municipalities
) -> dict[str, Any]:
    """The segment form's groups of checkboxes, built from the values the audience actually has."""
    values = dashboard.audience_values(session, event)
    groups = [
        (
            "role",
            "Functie",
            [(key, role_label(key, lang)) for key in roles() if key in values.roles],
            segment.roles,
        ),
        (
            "municipality",
            "Gemeente",
            sorted(
                ((code, places.name(code)) for code in values.municipalities),
                key=lambda item: item[1].casefold(),
            ),
            segment.municipalities,
        ),
        ("tag", "Label", [(tag, tag) for tag in values.tags], segment.tags),
        (
            "language",
            "Taal",
            [(code, {"nl": "Nederlands", "en": "Engels"}.get(code, code)) for code in values.languages],
            segment.languages,
        ),
    ]
    return {
        "role_labels": {key: role_label(key, lang) for key in values.roles},
        # A group with one value to choose would select everybody: it is left out.
        "groups": [group for group in groups if len(group[2]) > 1 or group[3]],
        "has_previous": values.has_previous,
        "segment": segment,
    }


@router.get("/events/{slug}/audience", response_class=HTMLResponse)
def audience(
    request: Request, slug: str, session: SessionDep, segment: SegmentDep, measure: str = "invited"
) -> HTMLResponse:
    """Choose a segment; see how many people it selects and where they are, and go on to send to it."""
    event = get_event(session, slug)
    lang = language(request)
    measure = measure if measure in MEASURES else "invited"
    query = urlencode(segment_params(segment))
    context = {
        "event": event,
        **_segment_choices(session, event, segment, lang, get_runtime(request).municipalities),
        **_coverage_context(session, event, segment, measure, lang, get_runtime(request).municipalities),
        "measure": measure,
        "send_url": f"/events/{event.slug}/send" + (f"?{query}" if query else ""),
        "filtered": bool(query),
    }
    return render(request, "audience.html", context)


@router.get("/events/{slug}/attendees", response_class=HTMLResponse)
def attendee_list(
    request: Request, slug: str, session: SessionDep, segment: SegmentDep, answer: str = ""
) -> HTMLResponse:
    """Everyone invited, by surname, filtered by answer and segment, with the exports and check-in list."""
    event = get_event(session, slug)
    lang = language(request)
    try:
        chosen = parse_answer(answer) if answer not in ("", "none") else None
    except InputError:
        message = translate("Kies een antwoord uit de lijst.", lang)
        return render(request, "error.html", {"message": message}, status_code=400)
    people = attendees(session, event, chosen, segment, get_runtime(request).municipalities)
    if answer == "none":
        people = [person for person in people if person["answer"] is None]
    moment = _moment(event, lang)
    for person in people:
        answered_at = person["answered_at"]
        person["answered"] = moment(datetime.fromisoformat(answered_at)) if answered_at else ""
    query = urlencode(segment_params(segment))
    context = {
        "event": event,
        **_segment_choices(session, event, segment, lang, get_runtime(request).municipalities),
        "people": people,
        "answer": answer,
        "answer_filters": ANSWER_FILTERS,
        "export_query": f"?{query}" if query else "",
    }
    return render(request, "attendees.html", context)
