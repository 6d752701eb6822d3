"""The JSON API under /api/v1 for audiences: list uploads, import jobs, coverage and exports.

Routes parse input, call the same services as the CLI, and present the result.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, File, Form, HTTPException, Query, UploadFile
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from invites.errors import InputError, NotFound
from invites.events import get_event
from invites.exports import export_bytes
from invites.imports import queue_import
from invites.models import Event, ImportJob
from invites.progress import ImportProgress
from invites.rsvp import parse_answer
from invites.segments import Segment, coverage
from invites.status import attendees, timeline
from invites.web.auth import organiser_router
from invites.web.deps import RuntimeDep, SessionDep

router = organiser_router(prefix="/api/v1", tags=["audience"])


def _event(session: Session, slug: str) -> Event:
    try:
        return get_event(session, slug)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc


def segment_query(
    role: Annotated[list[str] | None, Query(description="role name or key, repeatable")] = None,
    municipality: Annotated[list[str] | None, Query(description="name or CBS code, repeatable")] = None,
    tag: Annotated[list[str] | None, Query()] = None,
    language: Annotated[list[str] | None, Query()] = None,
    attended_previous: bool = False,
) -> Segment:
    try:
        return Segment.parse(role or [], municipality or [], tag or [], language or [], attended_previous)
    except InputError as exc:
        raise HTTPException(400, str(exc)) from exc


SegmentDep = Annotated[Segment, Depends(segment_query)]


@router.post("/events/{slug}/imports", status_code=202)
def upload_list(
    slug: str,
    file: Annotated[UploadFile, File(description="a CSV or .xlsx recipient list")],
    session: SessionDep,
    runtime: RuntimeDep,
    strict: Annotated[bool, Form()] = False,
    sheet: Annotated[str | None, Form()] = None,
) -> JSONResponse:
    """Store the upload and queue its import for a worker; its URL tells the progress, then the report."""
    event = _event(session, slug)
    try:
        job = queue_import(
            session,
            event,
            file.file,
            file.filename or "upload.csv",
            runtime.settings.var_dir,
            datetime.now(UTC),
            strict=strict,
            sheet=sheet or None,
            max_bytes=runtime.settings.import_max_bytes,
        )
        session.commit()
    except InputError as exc:
        session.rollback()
        raise HTTPException(413 if "over the limit" in str(exc) else 400, str(exc)) from exc
    from workers.import_tasks import import_list  # the Celery app loads only where work is enqueued

    import_list.delay(job.id)
    url = f"/api/v1/imports/{job.id}"
    return JSONResponse(
        {"job": job.id, "status": job.status, "url": url}, status_code=202, headers={"Location": url}
    )


@router.get("/imports/{job_id}")
def import_status(job_id: int, session: SessionDep, runtime: RuntimeDep) -> dict[str, Any]:
    """An import job: queued, running (with the rows read so far), done (with the report) or failed."""
    job = session.get(ImportJob, job_id)
    if job is None:
        raise HTTPException(404, f"no import job {job_id}")
    body: dict[str, Any] = {"job": job.id, "filename": job.filename, "status": job.status}
    if job.status in ("queued", "running"):
        body["rows_read"] = ImportProgress.for_settings(runtime.settings).rows(job.id)
    elif job.status == "done":
        body["report"] = job.report
    else:
        body["error"] = job.report.get("error", "")
    return body


@router.get("/events/{slug}/audience")
def audience(slug: str, session: SessionDep, segment: SegmentDep) -> dict[str, Any]:
    """The coverage matrix: recipients per municipality × role, invited and answered."""
    return coverage(session, _event(session, slug), segment)


@router.get("/events/{slug}/export.{fmt}")
def export(slug: str, fmt: str, session: SessionDep, segment: SegmentDep) -> Response:
    """The audience with its answers as CSV or Excel, with formulas in cells neutralised."""
    if fmt not in ("csv", "xlsx"):
        raise HTTPException(404, "export as .csv or .xlsx")
    event = _event(session, slug)
    media = {
        "csv": "text/csv; charset=utf-8",
        "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    }[fmt]
    return Response(
        export_bytes(session, event, fmt, segment),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{event.slug}.{fmt}"'},
    )


@router.get("/events/{slug}/timeline")
def answers_timeline(slug: str, session: SessionDep) -> list[dict[str, Any]]:
    """The answers as they stood at the end of each day that anything changed."""
    return timeline(session, _event(session, slug))


@router.get("/events/{slug}/attendees")
def attendee_list(
    slug: str, session: SessionDep, segment: SegmentDep, answer: str | None = None
) -> list[dict[str, Any]]:
    """The invited, filtered by answer (accepted, declined, tentative) and segment, sorted by surname."""
    try:
        chosen = parse_answer(answer) if answer else None
    except InputError as exc:
        raise HTTPException(400, str(exc)) from exc
    return attendees(session, _event(session, slug), chosen, segment)
