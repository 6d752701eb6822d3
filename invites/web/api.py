"""The JSON API under /api/v1 for audiences: list uploads, import jobs, coverage and exports.

Routes parse input, call the same services as the CLI, and present the result.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import StringConstraints
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from invites.db.models import ImportJob
from invites.db.segments import coverage
from invites.domain.errors import InputError, TooLarge
from invites.domain.segment import Segment
from invites.readmodels.exports import export_bytes
from invites.readmodels.status import attendees, timeline
from invites.runtime import Runtime
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


# The upload's form, described for the schema and read in the route itself: FastAPI reads File() and Form()
# parameters before it runs the route's dependencies, which would spool an unauthenticated body to disk
# before the token check. The body's size is capped on the way in (invites/web/limits.py).
IMPORT_FORM: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "a CSV or .xlsx recipient list",
                        },
                        "strict": {
                            "type": "boolean",
                            "default": False,
                            "description": "refuse the whole list if any row is rejected",
                        },
                        "sheet": {
                            "type": "string",
                            "maxLength": 100,
                            "pattern": NO_NUL,
                            "description": "the workbook's sheet to read (default: the first)",
                        },
                        "encoding": {
                            "type": "string",
                            "maxLength": 40,
                            "pattern": NO_NUL,
                            "description": "a CSV file's encoding (default: detected)",
                        },
                    },
                }
            }
        },
    }
}
FLAGS = {
    "true": True,
    "1": True,
    "on": True,
    "yes": True,
    "false": False,
    "0": False,
    "off": False,
    "no": False,
}
MAX_SHEET_NAME = 100


def _import_form(form: FormData) -> tuple[UploadFile, bool, str | None, str | None]:
    """The file, strict, sheet and encoding of an upload's form; 400 naming the field that is wrong."""
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise HTTPException(400, "send the list as the multipart field 'file' (a CSV or .xlsx file)")
    strict = form.get("strict", "false")
    if not isinstance(strict, str) or strict.strip().lower() not in FLAGS:
        raise HTTPException(400, "the field 'strict' must be true or false")
    sheet = form.get("sheet")
    if sheet is not None and (not isinstance(sheet, str) or len(sheet) > MAX_SHEET_NAME or "\x00" in sheet):
        raise HTTPException(
            400, f"the field 'sheet' must be a sheet's name of at most {MAX_SHEET_NAME} characters"
        )
    encoding = form.get("encoding")
    if encoding is not None and (not isinstance(encoding, str) or len(encoding) > 40 or "\x00" in encoding):
        raise HTTPException(400, "the field 'encoding' must be an encoding's name such as cp1252 or utf-8")
    return upload, FLAGS[strict.strip().lower()], sheet or None, encoding or None


def _check_event(runtime: Runtime, slug: str) -> None:
    with runtime.sessions() as session:
        get_event(session, slug)  # 404 for an unknown event


@router.post(
    "/events/{slug}/imports", status_code=202, responses=problems(400, 404, 413), openapi_extra=IMPORT_FORM
)
async def upload_list(slug: Slug, request: Request, runtime: RuntimeDep, response: Response) -> ImportQueued:
    """Store the upload and queue its import for a worker; its URL tells the progress, then the report.

    The multipart body (`file`, optional `strict` and `sheet`) is read only after the token is checked, and
    refused with 413 once it passes INVITES_IMPORT_MAX_BYTES.
    """
    await run_in_threadpool(_check_event, runtime, slug)
    async with request.form(max_files=1, max_fields=10, max_part_size=4096) as form:
        upload, strict, sheet, encoding = _import_form(form)
        try:
            job_id = await run_in_threadpool(
                partial(
                    submit_import,
                    runtime.sessions,
                    runtime.settings,
                    slug,
                    upload.file,
                    upload.filename or "upload.csv",
                    runtime.enqueue_import,
                    datetime.now(UTC),
                    strict=strict,
                    sheet=sheet,
                    encoding=encoding,
                )
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
