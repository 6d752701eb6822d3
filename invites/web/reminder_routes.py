"""The JSON API for an event's reminder rules: list, add or change (by name), and delete."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import HTTPException
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from invites import reminders
from invites.errors import InputError, NotFound
from invites.events import get_event
from invites.models import Event
from invites.web.auth import organiser_router
from invites.web.deps import RuntimeDep, SessionDep

router = organiser_router(prefix="/api/v1", tags=["reminders"])


class RuleBody(BaseModel):
    name: str
    when: str = Field(description="an offset before the start ('-7d 10:00', '-2h') or a local date and time")
    audience: str | list[str] = Field(description="no-answer, accepted, tentative, waitlist or invited")
    template: str = "reminder"
    segment: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True


def _event(session: Session, slug: str) -> Event:
    try:
        return get_event(session, slug)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc


@router.get("/events/{slug}/reminders")
def list_rules(slug: str, session: SessionDep, runtime: RuntimeDep) -> dict[str, Any]:
    event = _event(session, slug)
    now = datetime.now(UTC)
    return {
        "event": slug,
        "rules": [
            reminders.describe_rule(rule, event, runtime.settings, now)
            for rule in reminders.event_rules(session, event)
        ],
    }


@router.post("/events/{slug}/reminders")
def save_rule(slug: str, body: RuleBody, session: SessionDep, runtime: RuntimeDep) -> dict[str, Any]:
    event = _event(session, slug)
    now = datetime.now(UTC)
    try:
        spec = reminders.RuleSpec.parse(
            body.name,
            body.when,
            body.audience,
            body.template,
            body.segment,
            body.enabled,
            ZoneInfo(event.timezone),
        )
    except InputError as exc:
        raise HTTPException(400, str(exc)) from exc
    rule = reminders.save_rule(session, event, spec, now)
    session.commit()
    return reminders.describe_rule(rule, event, runtime.settings, now)


@router.delete("/events/{slug}/reminders/{name}", status_code=204)
def delete_rule(slug: str, name: str, session: SessionDep) -> None:
    event = _event(session, slug)
    if not reminders.delete_rule(session, event, name):
        raise HTTPException(404, f"event {slug!r} has no reminder {name!r}")
    session.commit()
