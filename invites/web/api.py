"""The JSON API under /api/v1 for audiences: list uploads, import jobs, coverage and exports.

Routes parse input, call the same services as the CLI, and present the result.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, File, Form, HTTPException, Query, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import StringConstraints

from invites.db.models import ImportJob
from invites.db.segments import coverage
from invites.domain.errors import InputError, TooLarge
from invites.domain.segment import Segment
from invites.readmodels.exports import export_bytes
from invites.readmodels.status import attendees, timeline
from invites.services.events import get_event
from invites.services.imports import submit_import
from invites.services.rsvp import parse_answer
from invites.web.api_models import (
    NO_NUL,
    Attendee,
    Coverage,
    ImportQueued,
    ImportStatus,
    Slug,
    TimelineDay,
    bearer,
    problems,
)
from invites.web.auth import organiser_router
from invites.web.deps import RuntimeDep, SessionDep

router = organiser_router(prefix="/api/v1", tags=["audience"], dependencies=[Depends(bearer)])
EXPORT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
# Query values are matched against names and stored tags: no NUL character, which PostgreSQL cannot hold.
# Row ids are 32-bit integers on every database: a larger one names nothing (and SQLite cannot bind it).
RowId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
Texts = list[Annotated[str, StringConstraints(pattern=NO_NUL, max_length=200)]] | None


def segment_query(
    role: Annotated[Texts, Query(description="role name or key, repeatable")] = None,
    municipality: Annotated[Texts, Query(description="name or CBS code, repeatable")] = None,
    tag: Annotated[Texts, Query(description="a tag from the list's tags column, repeatable")] = None,
    language: Annotated[Texts, Query(description="nl or en, repeatable")] = None,
    attended_previous: bool = False,
    *,
    runtime: RuntimeDep,
) -> Segment:
    try:
        return Segment.parse(
            role or [],
            municipality or [],
            tag or [],
            language or [],
            attended_previous,
            runtime.municipalities,
        )
    except InputError as exc:
        raise HTTPException(400, str(exc)) from exc


SegmentDep = Annotated[Segment, Depends(segment_query)]


@router.post("/events/{slug}/imports", status_code=202, responses=problems(400, 404, 413))
def upload_list(
    slug: Slug,
    file: Annotated[UploadFile, File(description="a CSV or .xlsx recipient list")],
    session: SessionDep,
    runtime: RuntimeDep,
    response: Response,
    strict: Annotated[bool, Form()] = False,
    sheet: Annotated[str | None, Form(max_length=100, pattern=NO_NUL)] = None,
    encoding: Annotated[
        str | None, Form(max_length=40, pattern=NO_NUL, description="a CSV file's; default: detected")
    ] = None,
) -> ImportQueued:
    """Store the upload and queue its import for a worker; its URL tells the progress, then the report."""
    get_event(session, slug)  # 404 for an unknown event
    session.close()  # the upload is a transaction of its own
    try:
        job_id = submit_import(
            runtime.sessions,
            runtime.settings,
            slug,
            file.file,
            file.filename or "upload.csv",
            runtime.enqueue_import,
            datetime.now(UTC),
            strict=strict,
            sheet=sheet or None,
            encoding=encoding or None,
        )
    except TooLarge as exc:
        raise HTTPException(413, str(exc)) from exc
    except InputError as exc:
        raise HTTPException(400, str(exc)) from exc
    url = f"/api/v1/imports/{job_id}"
    response.headers["Location"] = url
    return ImportQueued(job=job_id, status="queued", url=url)


@router.get("/imports/{job_id}", responses=problems(404), response_model_exclude_none=True)
def import_status(job_id: RowId, session: SessionDep, runtime: RuntimeDep) -> ImportStatus:
    """An import job: queued, running (with the rows read so far), done (with the report) or failed."""
    job = session.get(ImportJob, job_id)
    if job is None:
        raise HTTPException(404, f"no import job {job_id}")
    found = ImportStatus(job=job.id, filename=job.filename, status=job.status)
    if job.status in ("queued", "running"):
        found.rows_read = runtime.import_progress.rows(job.id)
    elif job.status == "done":
        found.report = job.report
    else:
        found.error = str(job.report.get("error", ""))
    return found


@router.get("/events/{slug}/audience", responses=problems(400, 404))
def audience(slug: Slug, session: SessionDep, segment: SegmentDep, runtime: RuntimeDep) -> Coverage:
    """The coverage matrix: recipients per municipality × role, invited and answered.

    `totals.all.invited` is how many people the segment selects.
    """
    return Coverage.model_validate(
        coverage(session, get_event(session, slug), segment, runtime.municipalities)
    )


@router.get(
    "/events/{slug}/export.{fmt}",
    response_class=Response,
    responses={
        200: {
            "description": "the file, as an attachment",
            "content": {
                media: {"schema": {"type": "string", "format": "binary"}} for media in EXPORT_TYPES.values()
            },
        },
        **problems(400, 404),
    },
)
def export(
    slug: Slug,
    fmt: Annotated[str, PathParam(description="csv or xlsx", examples=["csv"])],
    session: SessionDep,
    segment: SegmentDep,
    runtime: RuntimeDep,
) -> Response:
    """The audience with its answers as CSV or Excel, with formulas in cells neutralised."""
    if fmt not in EXPORT_TYPES:
        raise HTTPException(404, "export as .csv or .xlsx")
    event = get_event(session, slug)
    return Response(
        export_bytes(session, event, fmt, segment, runtime.municipalities),
        media_type=EXPORT_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{event.slug}.{fmt}"'},
    )


@router.get("/events/{slug}/timeline", responses=problems(404))
def answers_timeline(slug: Slug, session: SessionDep) -> list[TimelineDay]:
    """The answers as they stood at the end of each day that anything changed."""
    return [TimelineDay.model_validate(day) for day in timeline(session, get_event(session, slug))]


@router.get("/events/{slug}/attendees", responses=problems(400, 404))
def attendee_list(
    slug: Slug,
    session: SessionDep,
    segment: SegmentDep,
    runtime: RuntimeDep,
    answer: Annotated[str | None, Query(description="accepted, declined or tentative")] = None,
) -> list[Attendee]:
    """The invited, filtered by answer (accepted, declined, tentative) and segment, sorted by surname."""
    try:
        chosen = parse_answer(answer) if answer else None
    except InputError as exc:
        raise HTTPException(400, str(exc)) from exc
    return [
        Attendee.model_validate(row)
        for row in attendees(session, get_event(session, slug), chosen, segment, runtime.municipalities)
    ]
