"""The JSON API under /api/v1 for sends: count or start a send to a segment, follow a campaign, and pause,
resume or cancel it. The same services as `invites send` and `invites campaign ...`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import HTTPException, Path, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.orm import Session

from invites.db.models import Campaign, Event
from invites.domain.errors import InputError
from invites.domain.segment import Segment
from invites.services import campaigns
from invites.services.events import get_event
from invites.web.auth import organiser_router
from invites.web.deps import RuntimeDep, SessionDep

router = organiser_router(prefix="/api/v1", tags=["sends"])

Kind = Literal["invitation", "reminder", "update", "cancellation"]
# Printable text without control characters: a NUL byte is refused by PostgreSQL, and no name has one.
Text = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
Slug = Annotated[str, Path(max_length=120, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")]
CampaignId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class Problem(BaseModel):
    detail: str


class SegmentBody(BaseModel):
    """Who a send goes to; every list narrows it, and an empty segment is the whole audience."""

    model_config = ConfigDict(extra="forbid")

    roles: list[Text] = Field(default_factory=list, max_length=50, description="role names or keys")
    municipalities: list[Text] = Field(
        default_factory=list, max_length=400, description="municipality names or CBS codes"
    )
    tags: list[Text] = Field(default_factory=list, max_length=50)
    languages: list[Literal["nl", "en"]] = Field(default_factory=list, max_length=2)
    attended_previous: bool = Field(False, description="only who accepted an earlier meeting of the series")


class SendRequest(SegmentBody):
    kind: Kind = "invitation"
    dry_run: bool = Field(False, description="count who it would reach, and send nothing")


class SegmentOut(BaseModel):
    roles: list[str]
    municipalities: list[str]
    tags: list[str]
    languages: list[str]
    attended_previous: bool


class SendOut(BaseModel):
    event: str
    kind: str
    segment: SegmentOut
    dry_run: bool
    selected: int = Field(description="invited people the segment selects")
    suppressed: int = Field(description="of those, left out: unsubscribed, suppressed or undeliverable")
    recipients: int = Field(description="the rest: the campaign's total")
    already_sent: int = Field(description="recipients who have this message already and get no second one")
    new: int = Field(description="recipients who get the message now")
    campaign: int | None = Field(None, description="the campaign started (not on a dry run)")
    queued: int = Field(0, description="messages handed to the workers")
    url: str | None = Field(None, description="the campaign's progress")


class ProgressOut(BaseModel):
    campaign: int
    event: str
    kind: str
    segment: SegmentOut
    created_at: datetime
    state: Literal["running", "paused", "cancelled", "done"]
    total: int
    done: int
    queued: int
    sending: int
    sent: int
    deferred: int
    failed: int
    bounced: int
    cancelled: int
    rate: float = Field(description="messages sent per second over the last minute")
    seconds_left: int | None = Field(description="at that rate; null when nothing was sent lately")
    handed: int = Field(0, description="messages this request handed to the workers (on resume)")
    stopped: int = Field(0, description="messages this request stopped for good (on cancel)")


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "no valid API token or session"},
    404: {"model": Problem, "description": "no such event or campaign"},
}
CONFLICT: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    409: {"model": Problem, "description": "the campaign is not in a state that allows this"},
}
SEND_RESPONSES: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    200: {"model": SendOut, "description": "a dry run: the counts, nothing sent"},
    400: {
        "model": Problem,
        "description": "the segment names something unknown, or the kind cannot be sent now",
    },
    409: {"model": Problem, "description": "nobody to send to: everyone selected has it already"},
}


def _segment_out(data: dict[str, Any]) -> SegmentOut:
    segment = Segment.from_dict(data)
    return SegmentOut(
        roles=list(segment.roles),
        municipalities=list(segment.municipalities),
        tags=list(segment.tags),
        languages=list(segment.languages),
        attended_previous=segment.attended_previous,
    )


def _progress(session: Session, campaign_id: int, **extra: int) -> ProgressOut:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise HTTPException(404, f"no campaign {campaign_id}")
    event = session.get_one(Event, campaign.event_id)
    found = campaigns.campaign_progress(session, campaign_id, datetime.now(UTC))
    found.update(event=event.slug, segment=_segment_out(found["segment"]), **extra)
    return ProgressOut.model_validate(found)


@router.post("/events/{slug}/sends", status_code=201, responses=SEND_RESPONSES)
def start_send(
    slug: Slug, body: SendRequest, session: SessionDep, runtime: RuntimeDep, response: Response
) -> SendOut:
    """Send a message to a segment of the audience (201, with the campaign's URL in Location), or with
    `dry_run` count who it would reach (200). Nobody gets the same message twice: who has it is skipped."""
    get_event(session, slug)  # 404 for an unknown event
    # The lookup's read ends here: on SQLite an open read would keep the send below from committing.
    session.rollback()
    try:
        segment = Segment.parse(
            body.roles,
            body.municipalities,
            body.tags,
            [str(x) for x in body.languages],
            body.attended_previous,
            places=runtime.municipalities,
        )
        sent = campaigns.send_campaign(
            runtime.sessions,
            slug,
            body.kind,
            runtime.settings,
            runtime.templates,
            runtime.enqueue,
            datetime.now(UTC),
            segment,
            dry_run=body.dry_run,
        )
    except campaigns.NothingToSend as exc:
        raise HTTPException(409, str(exc)) from exc
    except InputError as exc:
        raise HTTPException(400, str(exc)) from exc
    plan = sent.plan
    result = SendOut(
        event=slug,
        kind=body.kind,
        segment=_segment_out(segment.as_dict()),
        dry_run=body.dry_run,
        selected=plan.selected,
        suppressed=plan.suppressed,
        recipients=plan.recipients,
        already_sent=plan.already,
        new=plan.new,
    )
    started, queued = sent.started, sent.handed
    if started is None:
        response.status_code = 200
        return result
    url = f"/api/v1/campaigns/{started.campaign_id}"
    response.headers["Location"] = url
    return result.model_copy(
        update={
            "recipients": started.total,
            "new": started.new_rows,
            "already_sent": started.total - started.new_rows,
            "campaign": started.campaign_id,
            "queued": queued,
            "url": url,
        }
    )


@router.get("/campaigns/{campaign_id}", responses=NOT_FOUND)
def campaign_status(campaign_id: CampaignId, session: SessionDep) -> ProgressOut:
    """A campaign's progress: its state, its messages per status, the rate and the time left."""
    return _progress(session, campaign_id)


@router.post("/campaigns/{campaign_id}/pause", responses=CONFLICT)
def pause(campaign_id: CampaignId, session: SessionDep, runtime: RuntimeDep) -> ProgressOut:
    """Stop sending the campaign's remaining messages until it is resumed; those in flight finish."""
    _progress(session, campaign_id)
    session.rollback()
    try:
        campaigns.pause_campaign(runtime.sessions, campaign_id, datetime.now(UTC))
    except InputError as exc:
        raise HTTPException(409, str(exc)) from exc
    return _progress(session, campaign_id)


@router.post("/campaigns/{campaign_id}/resume", responses=CONFLICT)
def resume(campaign_id: CampaignId, session: SessionDep, runtime: RuntimeDep) -> ProgressOut:
    """Go on sending a paused campaign: its unsent messages are handed to the workers again."""
    _progress(session, campaign_id)
    session.rollback()
    try:
        handed = campaigns.resume_campaign(
            runtime.sessions, campaign_id, runtime.enqueue, runtime.settings.batch_size, datetime.now(UTC)
        )
    except InputError as exc:
        raise HTTPException(409, str(exc)) from exc
    return _progress(session, campaign_id, handed=handed)


@router.post("/campaigns/{campaign_id}/cancel", responses=CONFLICT)
def cancel(campaign_id: CampaignId, session: SessionDep, runtime: RuntimeDep) -> ProgressOut:
    """Cancel a campaign for good: its messages not yet sent are never sent."""
    _progress(session, campaign_id)
    session.rollback()
    try:
        stopped = campaigns.cancel_campaign(runtime.sessions, campaign_id, datetime.now(UTC))
    except InputError as exc:
        raise HTTPException(409, str(exc)) from exc
    return _progress(session, campaign_id, stopped=stopped)
