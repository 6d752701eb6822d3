"""The JSON API for an event's reminder rules: list, add or change (by name), and delete.

A rule that cannot be read answers 400; one that is understood but reaches beyond the limits (an offset of
more than a year, a date outside 2000–2099) answers 422 in FastAPI's validation shape, the field in `loc`.
Nothing is stored either way."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import Depends, HTTPException
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from invites.domain import rules
from invites.services import reminders
from invites.services.events import get_event
from invites.web.api_models import NO_NUL, ReminderRule, ReminderRules, SegmentModel, Slug, bearer, problems
from invites.web.auth import organiser_router
from invites.web.deps import RuntimeDep, SessionDep

router = organiser_router(prefix="/api/v1", tags=["reminders"], dependencies=[Depends(bearer)])
Text = Annotated[str, Field(max_length=200, pattern=NO_NUL)]


class RuleBody(BaseModel):
    name: Text = Field(description="the rule's name; saving a rule of the same name changes it")
    when: Text = Field(description="an offset before the start ('-7d 10:00', '-2h') or a local date and time")
    audience: Text | list[Text] = Field(description="no-answer, accepted, tentative, waitlist or invited")
    template: Text = "reminder"
    segment: SegmentModel = Field(default_factory=SegmentModel)
    enabled: bool = True


@router.get("/events/{slug}/reminders", responses=problems(404))
def list_rules(slug: Slug, session: SessionDep, runtime: RuntimeDep) -> ReminderRules:
    """The event's reminder rules, each with when it sends and its state now."""
    event = get_event(session, slug)
    now = datetime.now(UTC)
    return ReminderRules(
        event=slug,
        rules=[
            ReminderRule.model_validate(reminders.describe_rule(rule, event, runtime.settings, now))
            for rule in reminders.event_rules(session, event)
        ],
    )


def refused(exc: rules.RuleError, body: RuleBody) -> HTTPException:
    if exc.beyond_limit:
        value = getattr(body, exc.field, None)
        return HTTPException(
            422, [{"type": "value_error", "loc": ["body", exc.field], "msg": str(exc), "input": value}]
        )
    return HTTPException(400, f"field '{exc.field}': {exc}")


@router.post("/events/{slug}/reminders", responses=problems(400, 404))
def save_rule(slug: Slug, body: RuleBody, session: SessionDep, runtime: RuntimeDep) -> ReminderRule:
    """Add a reminder rule, or change the event's rule of that name."""
    event = get_event(session, slug)
    now = datetime.now(UTC)
    try:
        spec = rules.RuleSpec.parse(
            body.name,
            body.when,
            body.audience,
            body.template,
            body.segment.model_dump(),
            body.enabled,
            ZoneInfo(event.timezone),
            runtime.municipalities,
        )
    except rules.RuleError as exc:
        raise refused(exc, body) from exc
    event_id = event.id
    session.rollback()  # the use case writes in a session of its own (an open read would hold it up)
    return ReminderRule.model_validate(
        reminders.keep_rule(runtime.sessions, runtime.settings, event_id, spec, now)
    )


@router.delete("/events/{slug}/reminders/{name}", status_code=204, responses=problems(404))
def delete_rule(
    slug: Slug,
    name: Annotated[str, PathParam(max_length=200, pattern=NO_NUL)],
    session: SessionDep,
    runtime: RuntimeDep,
) -> None:
    """Remove the rule: it sends nothing more (what it sent already stays sent)."""
    event_id = get_event(session, slug).id
    session.rollback()  # the use case writes in a session of its own
    if not reminders.remove_rule(runtime.sessions, event_id, name):
        raise HTTPException(404, f"event {slug!r} has no reminder {name!r}")
