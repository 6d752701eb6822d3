"""Organiser pages for sending: the message preview with a test send to oneself, the send with its
confirmation and live progress, and the reminder rules. Routes parse the form, call the same services as
the CLI (invites.services.campaigns, invites.services.testsend, invites.services.reminders), and render the
result."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from invites.db.models import Campaign, Event
from invites.domain import rules
from invites.domain.errors import InputError, NotFound
from invites.domain.reference import LANGUAGES, Municipalities, roles
from invites.domain.segment import Segment
from invites.messages.compose import composer_for
from invites.messages.rendering import KINDS
from invites.messages.samples import sample_invitation, sample_recipient
from invites.services import campaigns, reminders, testsend
from invites.services.events import get_event
from invites.web.api import segment_query
from invites.web.auth import OrganiserDep, organiser_router
from invites.web.deps import RuntimeDep, SessionDep, get_runtime
from invites.web.mail_routes import composing_error
from invites.web.pages import language, render, translate

router = organiser_router(include_in_schema=False)

KIND_LABELS = {
    "invitation": "Uitnodiging",
    "reminder": "Herinnering",
    "update": "Wijziging",
    "cancellation": "Afgelasting",
    "rsvp-confirmation": "Bevestiging van een antwoord",
    "registration-confirmation": "Bevestiging van een aanmelding",
    "waitlist": "Wachtlijst",
}
STATE_LABELS = {
    "running": "Bezig",
    "paused": "Gepauzeerd",
    "cancelled": "Geannuleerd",
    "done": "Klaar",
}
RULE_STATES = {
    "waiting": "Wacht op zijn tijd",
    "due": "Wordt nu verstuurd",
    "held": "Wacht tot de verzenduren",
    "passed": "Voorbij",
    "disabled": "Uitgeschakeld",
    "cancelled": "Bijeenkomst afgelast",
    "error": "Kan niet worden gebruikt",
}
AUDIENCE_LABELS = {
    "no-answer": "Nog geen antwoord",
    "accepted": "Komt",
    "tentative": "Misschien",
    "waitlist": "Wachtlijst",
    "invited": "Alle genodigden",
}
MultiQuery = Annotated[list[str] | None, Query()]
CampaignId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def now() -> datetime:
    return datetime.now(UTC)


def not_found(request: Request) -> HTMLResponse:
    return render(request, "not_found.html", {}, status_code=404)


# --- The preview ------------------------------------------------------------------------------------------


def _preview_context(
    request: Request, rt: RuntimeDep, event: Event, kind: str, lang: str, width: str
) -> tuple[dict[str, Any], int]:
    """The preview page's context, and its status: 400 when the message cannot be composed."""
    kind = kind if kind in KINDS else "invitation"
    lang = lang if lang in LANGUAGES else event.language
    query = urlencode({"kind": kind, "lang": lang})
    context: dict[str, Any] = {
        "event": event,
        "tab": "preview",
        "kind": kind,
        "message_lang": lang,
        "width": "mobile" if width == "mobile" else "desktop",
        "kinds": [(key, translate(KIND_LABELS[key], language(request))) for key in KINDS],
        "html_url": f"/preview/{event.slug}?{query}&part=html",
        "ics_url": "",
        "eml_url": f"/preview/{event.slug}?{query}&part=eml",
        "subject": "",
        "text": "",
        "error": "",
        "send_error": "",
        "notice": "",
    }
    try:
        composer = composer_for(rt.settings, event, kind, rt.templates, now())
        parts = composer.parts(sample_recipient(language=lang), sample_invitation(kind), lang)
    except InputError as exc:
        context["error"] = composing_error(exc, language(request))
        return context, 400
    context.update(subject=parts.subject, text=parts.text)
    if parts.ics is not None:
        context["ics_url"] = f"/preview/{event.slug}?{query}&part=ics"
    return context, 200


@router.get("/events/{slug}/preview", response_class=HTMLResponse)
def preview_page(
    request: Request,
    slug: str,
    session: SessionDep,
    rt: RuntimeDep,
    organiser: OrganiserDep,
    kind: str = "invitation",
    lang: str = "",
    width: str = "desktop",
    tested: str = "",
) -> HTMLResponse:
    """A message as a made-up person gets it: subject, HTML at desktop or phone width, text, calendar."""
    event = get_event(session, slug)
    context, status = _preview_context(request, rt, event, kind, lang, width)
    if tested:
        context["notice"] = translate(
            "Testbericht verstuurd naar {address}.", language(request), address=organiser.email
        )
    return render(request, "preview.html", context, status_code=status)


@router.post("/events/{slug}/preview/test", response_class=HTMLResponse, response_model=None)
def preview_test(
    request: Request,
    slug: str,
    session: SessionDep,
    rt: RuntimeDep,
    organiser: OrganiserDep,
    kind: Annotated[str, Form()] = "invitation",
    lang: Annotated[str, Form()] = "",
) -> Response:
    """Send one test message of this kind and language to the signed-in organiser (as `invites send
    --test-to` does), then show the preview again with a notice."""
    event = get_event(session, slug)
    session.rollback()
    try:
        testsend.send_test(
            rt.sessions, rt.settings, rt.templates, slug, kind, organiser.email, lang or None, now()
        )
    except (InputError, NotFound, testsend.NotSent) as exc:
        context, _ = _preview_context(request, rt, event, kind, lang, "desktop")
        context["send_error"] = (
            composing_error(exc, language(request)) if isinstance(exc, InputError) else str(exc)
        )
        status = 502 if isinstance(exc, testsend.NotSent) else 400
        return render(request, "preview.html", context, status_code=status)
    query = urlencode({"kind": kind, "lang": lang or event.language, "tested": "1"})
    return RedirectResponse(f"/events/{slug}/preview?{query}", status_code=303)


# --- Sending ----------------------------------------------------------------------------------------------


def _split(values: list[str] | None) -> list[str]:
    """Repeated fields, each of which may also hold several values separated by commas."""
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def describe_segment(segment: Segment, lang: str, places: Municipalities) -> list[str]:
    """The segment in words, one line per filter; none for the whole audience."""
    known = roles()
    lines = []
    if segment.roles:
        names = ", ".join(known[key].label(lang) if key in known else key for key in segment.roles)
        lines.append(translate("Functie: {names}", lang, names=names))
    if segment.municipalities:
        names = ", ".join(places.name(code) for code in segment.municipalities)
        lines.append(translate("Gemeente: {names}", lang, names=names))
    if segment.tags:
        lines.append(translate("Label: {names}", lang, names=", ".join(segment.tags)))
    if segment.languages:
        lines.append(translate("Taal: {names}", lang, names=", ".join(segment.languages)))
    if segment.attended_previous:
        lines.append(translate("Was bij een eerdere bijeenkomst van de reeks", lang))
    return lines


def _segment_fields(segment: Segment) -> list[tuple[str, str]]:
    """The segment as (name, value) form fields that parse back to the same segment."""
    fields = [("role", key) for key in segment.roles]
    fields += [("municipality", code) for code in segment.municipalities]
    fields += [("tag", tag) for tag in segment.tags]
    fields += [("language", lang) for lang in segment.languages]
    if segment.attended_previous:
        fields.append(("attended_previous", "true"))
    return fields


def _campaign_rows(session: Session, event: Event, lang: str, places: Municipalities) -> list[dict[str, Any]]:
    rows = []
    for campaign_id in reversed(campaigns.campaigns_of(session, event.id)):
        progress = campaigns.campaign_progress(session, campaign_id, now())
        rows.append(
            {
                **progress,
                "label": translate(KIND_LABELS.get(progress["kind"], progress["kind"]), lang),
                "state_label": _state_label(progress, lang),
                "started": _local(progress["created_at"], event),
                "segment_lines": describe_segment(Segment.from_dict(progress["segment"]), lang, places),
            }
        )
    return rows


def _state_label(progress: dict[str, Any], lang: str) -> str:
    state = progress["state"]
    if state == "running" and progress["done"] >= progress["total"]:
        state = "done"
    return translate(STATE_LABELS.get(state, state), lang)


def _local(moment: str | datetime, event: Event) -> str:
    value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return value.astimezone(ZoneInfo(event.timezone)).strftime("%d-%m-%Y %H:%M")


def _send_form(request: Request, event: Event, kind: str, form: dict[str, Any]) -> dict[str, Any]:
    lang = language(request)
    known = roles()
    return {
        "event": event,
        "tab": "send",
        "kind": kind,
        "kinds": [(key, translate(KIND_LABELS[key], lang)) for key in campaigns.CAMPAIGN_KINDS],
        "roles": [(key, role.label(lang)) for key, role in known.items()],
        "form": form,
    }


@router.get("/events/{slug}/send", response_class=HTMLResponse)
def send_page(
    request: Request,
    slug: str,
    session: SessionDep,
    rt: RuntimeDep,
    kind: str = "",
    role: MultiQuery = None,
    municipality: MultiQuery = None,
    tag: MultiQuery = None,
    language_: Annotated[list[str] | None, Query(alias="language")] = None,
    attended_previous: bool = False,
    change: str = "",
) -> HTMLResponse:
    """Choose a message and a segment; with a kind chosen, say exactly who will get it, and ask to confirm."""
    event = get_event(session, slug)
    lang = language(request)
    form = {
        "role": role or [],
        "municipality": ", ".join(_split(municipality)),
        "tag": ", ".join(_split(tag)),
        "language": language_ or [],
        "attended_previous": attended_previous,
    }
    context = _send_form(request, event, kind or "invitation", form)
    context["campaigns"] = _campaign_rows(session, event, lang, rt.municipalities)
    if not kind or change:
        return render(request, "send.html", context)
    try:
        segment = segment_query(
            role,
            _split(municipality),
            _split(tag),
            language_,
            attended_previous,
            runtime=rt,
        )
        plan = campaigns.plan_campaign(session, event, kind, segment)
    except (HTTPException, InputError) as exc:
        context["error"] = exc.detail if isinstance(exc, HTTPException) else str(exc)
        return render(request, "send.html", context, status_code=400)
    return render(
        request,
        "send_confirm.html",
        _confirm_context(context, plan, lang, rt.municipalities),
    )


def _confirm_context(
    context: dict[str, Any], plan: campaigns.SendPlan, lang: str, places: Municipalities
) -> dict[str, Any]:
    fields = _segment_fields(plan.segment)
    return {
        **context,
        "plan": plan,
        "kind_label": translate(KIND_LABELS[plan.kind], lang),
        "segment_lines": describe_segment(plan.segment, lang, places),
        "segment_fields": fields,
        "change_url": f"/events/{context['event'].slug}/send?"
        + urlencode([*fields, ("kind", plan.kind), ("change", "1")]),
    }


@router.post("/events/{slug}/send", response_class=HTMLResponse, response_model=None)
def send_confirmed(
    request: Request,
    slug: str,
    session: SessionDep,
    rt: RuntimeDep,
    kind: Annotated[str, Form()] = "",
    confirm: Annotated[int, Form()] = -1,
    role: Annotated[list[str] | None, Form()] = None,
    municipality: Annotated[list[str] | None, Form()] = None,
    tag: Annotated[list[str] | None, Form()] = None,
    language_: Annotated[list[str] | None, Form(alias="language")] = None,
    attended_previous: Annotated[bool, Form()] = False,
) -> Response:
    """Start the confirmed send: only when the count the organiser saw is still the count it would reach.
    Then hand the messages to the workers and show the campaign's progress."""
    event = get_event(session, slug)
    lang = language(request)
    form = {
        "role": role or [],
        "municipality": ", ".join(_split(municipality)),
        "tag": ", ".join(_split(tag)),
        "language": language_ or [],
        "attended_previous": attended_previous,
    }
    context = _send_form(request, event, kind or "invitation", form)
    context["campaigns"] = _campaign_rows(session, event, lang, rt.municipalities)
    try:
        segment = segment_query(
            role, _split(municipality), _split(tag), language_, attended_previous, runtime=rt
        )
    except HTTPException as exc:
        context["error"] = exc.detail
        return render(request, "send.html", context, status_code=400)
    # The page's reads end here: on SQLite an open read would keep the send from committing.
    session.rollback()
    try:
        sent = campaigns.send_campaign(
            rt.sessions, slug, kind, rt.settings, rt.templates, rt.enqueue, now(), segment, confirmed=confirm
        )
    except campaigns.NothingToSend as exc:
        confirmed = _confirm_context(context, exc.plan, lang, rt.municipalities)
        confirmed["error"] = translate("Er is niemand om dit bericht nu naar te sturen.", lang)
        return render(request, "send_confirm.html", confirmed, status_code=400)
    except campaigns.CountChanged as exc:
        confirmed = _confirm_context(context, exc.plan, lang, rt.municipalities)
        confirmed["error"] = translate(
            "Het aantal ontvangers is veranderd sinds u keek: nu {n}. Controleer het en bevestig opnieuw.",
            lang,
            n=exc.plan.new,
        )
        return render(request, "send_confirm.html", confirmed, status_code=409)
    except InputError as exc:
        context["error"] = str(exc)
        return render(request, "send.html", context, status_code=400)
    started = sent.started
    assert started is not None  # not a dry run: a campaign was started
    return RedirectResponse(f"/events/{slug}/campaigns/{started.campaign_id}", status_code=303)


def _campaign_context(
    request: Request, session: Session, event: Event, campaign_id: int
) -> dict[str, Any] | None:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or campaign.event_id != event.id:
        return None
    lang = language(request)
    progress = campaigns.campaign_progress(session, campaign_id, now())
    finished = progress["done"] >= progress["total"]
    left = progress["seconds_left"]
    return {
        "event": event,
        "tab": "send",
        "p": progress,
        "label": translate(KIND_LABELS.get(progress["kind"], progress["kind"]), lang),
        "state_label": _state_label(progress, lang),
        "started": _local(progress["created_at"], event),
        "segment_lines": describe_segment(
            Segment.from_dict(progress["segment"]), lang, get_runtime(request).municipalities
        ),
        "finished": finished,
        # Polled while something can still change: running with work left, or messages still in flight.
        "live": (progress["state"] == "running" and not finished) or progress["sending"] > 0,
        "time_left": "" if left is None else f"{left // 60}:{left % 60:02d}",
        "rate": f"{progress['rate']:.1f}".replace(".", "," if lang == "nl" else "."),
        "poll_url": f"/events/{event.slug}/campaigns/{campaign_id}/progress",
        "url": f"/events/{event.slug}/campaigns/{campaign_id}",
        "error": "",
        "notice": "",
    }


@router.get("/events/{slug}/campaigns/{campaign_id}", response_class=HTMLResponse)
def campaign_page(
    request: Request, slug: str, campaign_id: CampaignId, session: SessionDep, done: str = ""
) -> HTMLResponse:
    """One campaign: its progress, live, and the buttons to pause, resume or cancel it."""
    event = get_event(session, slug)
    context = _campaign_context(request, session, event, campaign_id)
    if context is None:
        return not_found(request)
    notices = {
        "pause": "De campagne is gepauzeerd.",
        "resume": "De campagne gaat verder.",
        "cancel": "De campagne is geannuleerd.",
    }
    if done in notices:
        context["notice"] = translate(notices[done], language(request))
    return render(request, "campaign.html", context)


@router.get("/events/{slug}/campaigns/{campaign_id}/progress", response_class=HTMLResponse)
def campaign_fragment(
    request: Request, slug: str, campaign_id: CampaignId, session: SessionDep
) -> HTMLResponse:
    """The progress part of the campaign page alone, for data-poll to swap in."""
    event = get_event(session, slug)
    context = _campaign_context(request, session, event, campaign_id)
    if context is None:
        return not_found(request)
    return render(request, "_campaign_progress.html", context)


@router.post(
    "/events/{slug}/campaigns/{campaign_id}/{action}", response_class=HTMLResponse, response_model=None
)
def campaign_action(
    request: Request, slug: str, campaign_id: CampaignId, action: str, session: SessionDep, rt: RuntimeDep
) -> Response:
    """Pause, resume or cancel the campaign, then show it again."""
    event = get_event(session, slug)
    if (
        action not in ("pause", "resume", "cancel")
        or _campaign_context(request, session, event, campaign_id) is None
    ):
        return not_found(request)
    session.rollback()
    try:
        if action == "pause":
            campaigns.pause_campaign(rt.sessions, campaign_id, now())
        elif action == "resume":
            campaigns.resume_campaign(rt.sessions, campaign_id, rt.enqueue, rt.settings.batch_size, now())
        else:
            campaigns.cancel_campaign(rt.sessions, campaign_id, now())
    except (InputError, NotFound) as exc:
        context = _campaign_context(request, session, event, campaign_id) or {}
        context["error"] = str(exc)
        return render(request, "campaign.html", context, status_code=409)
    return RedirectResponse(f"/events/{slug}/campaigns/{campaign_id}?done={action}", status_code=303)


# --- Reminder rules ---------------------------------------------------------------------------------------


def _rules_context(
    request: Request, session: Session, rt: RuntimeDep, event: Event, form: dict[str, Any]
) -> dict[str, Any]:
    lang = language(request)
    moment = now()
    described_rules = []
    for rule in reminders.event_rules(session, event):
        described = reminders.describe_rule(rule, event, rt.settings, moment)
        described_rules.append(
            {
                **described,
                "audience_labels": [
                    translate(AUDIENCE_LABELS.get(a, a), lang) for a in described["audience"]
                ],
                "template_label": translate(KIND_LABELS.get(rule.template, rule.template), lang),
                "state_label": translate(RULE_STATES.get(described["state"], described["state"]), lang),
                "send_from_local": _local(described["send_from"], event) if described["send_from"] else "",
                "error_at_local": _local(described["error_at"], event) if described["error_at"] else "",
                "segment_lines": describe_segment(
                    Segment.from_dict(described["segment"]), lang, rt.municipalities
                ),
            }
        )
    return {
        "event": event,
        "tab": "reminders",
        "rules": described_rules,
        "audiences": [(a.value, translate(AUDIENCE_LABELS[a.value], lang)) for a in rules.Audience],
        "templates": [(t, translate(KIND_LABELS[t], lang)) for t in rules.REMINDER_TEMPLATES],
        "form": form,
        "error": "",
        "notice": "",
    }


EMPTY_RULE = {"name": "", "when": "", "audience": ["no-answer"], "template": "reminder", "enabled": True}


@router.get("/events/{slug}/reminders", response_class=HTMLResponse)
def reminders_page(
    request: Request,
    slug: str,
    session: SessionDep,
    rt: RuntimeDep,
    edit: str = "",
    saved: str = "",
    deleted: str = "",
) -> HTMLResponse:
    """The event's reminder rules with when each sends, and a form to add or change one."""
    event = get_event(session, slug)
    form = dict(EMPTY_RULE)
    context = _rules_context(request, session, rt, event, form)
    chosen = next((rule for rule in context["rules"] if rule["name"] == edit), None)
    if chosen:
        form.update(
            name=chosen["name"],
            when=chosen["when"],
            audience=chosen["audience"],
            template=chosen["template"],
            enabled=chosen["enabled"],
        )
        context["editing"] = True
    lang = language(request)
    if saved:
        context["notice"] = translate("Herinnering {name} is opgeslagen.", lang, name=saved)
    elif deleted:
        context["notice"] = translate("Herinnering {name} is verwijderd.", lang, name=deleted)
    return render(request, "reminders.html", context)


@router.post("/events/{slug}/reminders", response_class=HTMLResponse, response_model=None)
def reminder_save(
    request: Request,
    slug: str,
    session: SessionDep,
    rt: RuntimeDep,
    name: Annotated[str, Form()] = "",
    when: Annotated[str, Form()] = "",
    audience: Annotated[list[str] | None, Form()] = None,
    template: Annotated[str, Form()] = "reminder",
    enabled: Annotated[bool, Form()] = False,
) -> Response:
    """Add a rule, or change the rule of that name (its segment, set in the event file or the API, stays)."""
    event = get_event(session, slug)
    existing = next((r for r in reminders.event_rules(session, event) if r.name == name.strip()), None)
    try:
        spec = rules.RuleSpec.parse(
            name,
            when,
            audience or [],
            template,
            existing.segment if existing else {},
            enabled,
            ZoneInfo(event.timezone),
            rt.municipalities,
        )
    except InputError as exc:
        form = {
            "name": name,
            "when": when,
            "audience": audience or [],
            "template": template,
            "enabled": enabled,
        }
        context = _rules_context(request, session, rt, event, form)
        context["error"] = str(exc)
        return render(request, "reminders.html", context, status_code=400)
    event_id = event.id
    session.rollback()  # the use case writes in a session of its own
    reminders.keep_rule(rt.sessions, rt.settings, event_id, spec, now())
    return RedirectResponse(f"/events/{slug}/reminders?{urlencode({'saved': spec.name})}", status_code=303)


@router.post("/events/{slug}/reminders/delete", response_class=HTMLResponse, response_model=None)
def reminder_delete(
    request: Request, slug: str, session: SessionDep, rt: RuntimeDep, name: Annotated[str, Form()] = ""
) -> Response:
    """Remove the rule of that name; the reminders it sent stay in the outbox."""
    event_id = get_event(session, slug).id
    session.rollback()  # the use case writes in a session of its own
    if not reminders.remove_rule(rt.sessions, event_id, name):
        return not_found(request)
    return RedirectResponse(f"/events/{slug}/reminders?{urlencode({'deleted': name})}", status_code=303)
