"""Organiser pages for making and changing an event, and for uploading its recipient list.

An event comes from an event file, loaded exactly as `invites event load` does, or from the form, which
`invites.domain.eventform` turns into the same definition and checks with the same code. A list is stored and
queued for a worker as the API's upload is (`queue_import`, then the `invites.import_list` task), and its
report is read back from the import job.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from invites import db
from invites.db.models import Event, ImportJob
from invites.domain.audience import ENCODINGS
from invites.domain.errors import InputError, NotFound
from invites.domain.eventfile import EventSpec, parse_event_file
from invites.domain.eventform import DEFAULTS, FIELDS, FormError, event_tables, form_values, spec_from_form
from invites.messages.rendering import CHANGE_WORDS, join_words
from invites.runtime import Runtime
from invites.services.events import CALENDAR_FIELDS, get_event, load_event
from invites.services.imports import submit_import
from invites.web.auth import organiser_router
from invites.web.deps import RuntimeDep, SessionDep
from invites.web.pages import language, render, translate

router = organiser_router(include_in_schema=False)
EVENT_FILE_MAX_BYTES = 1024 * 1024
RECENT_IMPORTS = 10


def _not_found(request: Request) -> HTMLResponse:
    return render(request, "not_found.html", {}, status_code=404)


def _fields(form: FormData) -> dict[str, str]:
    return {name: value for name in FIELDS if isinstance(value := form.get(name), str)}


async def _event_file(request: Request, upload: Any) -> tuple[bytes, str]:
    """The bytes of an uploaded event file; raises FormError saying what is wrong with it."""
    lang = language(request)
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise FormError("event_file", translate("Kies een evenementbestand (.toml).", lang))
    data = await upload.read(EVENT_FILE_MAX_BYTES + 1)
    if len(data) > EVENT_FILE_MAX_BYTES:
        message = translate("{name}: het bestand is groter dan {limit} bytes.", lang)
        raise FormError("event_file", message.format(name=upload.filename, limit=f"{EVENT_FILE_MAX_BYTES:,}"))
    return data, upload.filename


def _load(rt: Runtime, spec: EventSpec, *, new: bool) -> tuple[bool, tuple[str, ...]]:
    """Create or update the event (as `invites event load`); a new event from the form may not take the
    slug of one that exists."""
    with db.transaction(rt.sessions) as session:
        if new and _exists(session, spec.slug):
            raise FormError(
                "slug", f"field 'slug': an event with slug {spec.slug!r} already exists; choose another"
            )
        result = load_event(session, spec, datetime.now(UTC))
        return result.created, result.calendar_changes


def _exists(session: Session, slug: str) -> bool:
    try:
        get_event(session, slug)
    except NotFound:
        return False
    return True


def _after_save(slug: str, created: bool, changes: tuple[str, ...]) -> RedirectResponse:
    if created:
        return RedirectResponse(f"/events/{slug}", status_code=303)
    query = urlencode([("saved", "1"), *(("changed", name) for name in changes)])
    return RedirectResponse(f"/events/{slug}/edit?{query}", status_code=303)


def _new_page(
    request: Request, values: dict[str, str], error: FormError | None = None, status_code: int = 200
) -> HTMLResponse:
    return render(request, "event_new.html", {"values": values, "error": error}, status_code=status_code)


@router.get("/events/new", response_class=HTMLResponse)
def new_event(request: Request) -> HTMLResponse:
    return _new_page(request, {name: DEFAULTS.get(name, "") for name in FIELDS})


@router.post("/events/new", response_model=None)
async def create_event(request: Request, rt: RuntimeDep) -> Response:
    """From an uploaded event file, or from the form; either way checked by the event file's rules."""
    async with request.form() as form:  # closes the uploaded file's spool when done
        return await _create(request, rt, form)


async def _create(request: Request, rt: Runtime, form: FormData) -> Response:
    values = _fields(form)
    from_file = form.get("source") == "file"
    try:
        if from_file:
            data, name = await _event_file(request, form.get("event_file"))
            spec = parse_event_file(data, name, rt.municipalities)
        else:
            spec = spec_from_form(values)
        created, changes = await run_in_threadpool(_load, rt, spec, new=not from_file)
    except InputError as exc:
        error = exc if isinstance(exc, FormError) else FormError("event_file" if from_file else "", str(exc))
        return _new_page(request, values or {n: DEFAULTS.get(n, "") for n in FIELDS}, error, 400)
    return _after_save(spec.slug, created, changes)


def _edit_page(
    request: Request,
    event: Event,
    values: dict[str, str],
    error: FormError | None = None,
    status_code: int = 200,
    changed: list[str] | None = None,
    saved: bool = False,
) -> HTMLResponse:
    lang = language(request)
    words = CHANGE_WORDS[lang]
    changes = join_words(list(dict.fromkeys(words[n] for n in changed or [] if n in CALENDAR_FIELDS)), lang)
    return render(
        request,
        "event_edit.html",
        {"event": event, "values": values, "error": error, "saved": saved, "changes": changes},
        status_code=status_code,
    )


@router.get("/events/{slug}/edit", response_class=HTMLResponse)
def edit_event(
    request: Request,
    slug: str,
    session: SessionDep,
    saved: int = 0,
    changed: Annotated[list[str] | None, Query()] = None,
) -> HTMLResponse:
    try:
        event = get_event(session, slug)
    except NotFound:
        return _not_found(request)
    return _edit_page(request, event, form_values(event), changed=changed, saved=bool(saved))


def _update(
    rt: Runtime, slug: str, values: dict[str, str], upload: tuple[bytes, str] | None
) -> tuple[str, ...]:
    """Save the edited event from the form (keeping what it does not show) or from a new version of its
    file; returns the calendar changes."""
    with db.transaction(rt.sessions) as session:
        event = get_event(session, slug)
        if upload is None:
            spec = spec_from_form(values, event_tables(event))
        else:
            spec = parse_event_file(*upload, rt.municipalities)
            if spec.slug != slug:
                raise FormError(
                    "event_file", f"{upload[1]}: this file is for the event {spec.slug!r}, not {slug!r}"
                )
        return load_event(session, spec, datetime.now(UTC)).calendar_changes


def _current(rt: Runtime, slug: str) -> tuple[Event, dict[str, str]]:
    with rt.sessions() as session:
        event = get_event(session, slug)
        return event, form_values(event)


@router.post("/events/{slug}/edit", response_model=None)
async def save_event(request: Request, slug: str, rt: RuntimeDep) -> Response:
    """Save the form, or a new version of the event file; a new time or place raises the calendar SEQUENCE."""
    async with request.form() as form:
        return await _save(request, slug, rt, form)


async def _save(request: Request, slug: str, rt: Runtime, form: FormData) -> Response:
    values = _fields(form)
    from_file = form.get("source") == "file"
    try:
        upload = await _event_file(request, form.get("event_file")) if from_file else None
        changes = await run_in_threadpool(_update, rt, slug, values, upload)
    except NotFound:
        return _not_found(request)
    except InputError as exc:
        error = exc if isinstance(exc, FormError) else FormError("event_file" if from_file else "", str(exc))
        event, current = await run_in_threadpool(_current, rt, slug)
        # The typed form comes back as it was typed; after a bad file, the form shows the event as it is.
        return _edit_page(request, event, current if from_file else values, error, 400)
    return _after_save(slug, False, changes)


# --- Recipient lists -------------------------------------------------------------------------------------


def _recent(session: Session, event: Event) -> list[ImportJob]:
    return list(
        session.scalars(
            select(ImportJob)
            .where(ImportJob.event_id == event.id)
            .order_by(ImportJob.id.desc())
            .limit(RECENT_IMPORTS)
        )
    )


@router.get("/events/{slug}/upload", response_class=HTMLResponse)
def upload_page(request: Request, slug: str, session: SessionDep) -> HTMLResponse:
    try:
        event = get_event(session, slug)
    except NotFound:
        return _not_found(request)
    context = {
        "event": event,
        "strict": False,
        "sheet": "",
        "encoding": "",
        "encodings": ENCODINGS,
        "error": "",
        "jobs": _recent(session, event),
    }
    return render(request, "upload.html", context)


def _queue(
    rt: Runtime, slug: str, upload: UploadFile, strict: bool, sheet: str | None, encoding: str | None
) -> int:
    """Store the list and queue its import, as the API's upload does (imports.submit_import)."""
    return submit_import(
        rt.sessions,
        rt.settings,
        slug,
        upload.file,
        upload.filename or "upload.csv",
        rt.enqueue_import,
        datetime.now(UTC),
        strict=strict,
        sheet=sheet,
        encoding=encoding,
    )


def _upload_error(rt: Runtime, slug: str) -> tuple[Event, list[ImportJob]]:
    with rt.sessions() as session:
        event = get_event(session, slug)
        return event, _recent(session, event)


@router.post("/events/{slug}/upload", response_model=None)
async def upload_list(request: Request, slug: str, rt: RuntimeDep) -> Response:
    async with request.form() as form:
        return await _upload(request, slug, rt, form)


async def _upload(request: Request, slug: str, rt: Runtime, form: FormData) -> Response:
    upload, sheet = form.get("file"), form.get("sheet")
    strict = bool(form.get("strict"))
    chosen_sheet = sheet.strip() if isinstance(sheet, str) and sheet.strip() else None
    encoding = form.get("encoding")
    chosen_encoding = encoding if isinstance(encoding, str) and encoding in ENCODINGS else None
    try:
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise InputError(translate("Kies een bestand met de lijst (CSV of .xlsx).", language(request)))
        job_id = await run_in_threadpool(_queue, rt, slug, upload, strict, chosen_sheet, chosen_encoding)
    except NotFound:
        return _not_found(request)
    except InputError as exc:
        event, jobs = await run_in_threadpool(_upload_error, rt, slug)
        context = {
            "event": event,
            "strict": strict,
            "sheet": chosen_sheet or "",
            "encoding": chosen_encoding or "",
            "encodings": ENCODINGS,
            "error": str(exc),
            "jobs": jobs,
        }
        return render(request, "upload.html", context, status_code=400)
    return RedirectResponse(f"/events/{slug}/imports/{job_id}", status_code=303)


def _job(session: Session, slug: str, job_id: int) -> tuple[Event, ImportJob]:
    event = get_event(session, slug)
    job = session.get(ImportJob, job_id)
    if job is None or job.event_id != event.id:
        raise NotFound(f"no import job {job_id} for {slug}")
    return event, job


def _job_view(job: ImportJob, rt: Runtime) -> dict[str, Any]:
    """What the report page shows of an import job: its progress, its report, or its error."""
    view: dict[str, Any] = {"id": job.id, "filename": job.filename, "status": job.status}
    if job.status in ("queued", "running"):
        view["rows_read"] = rt.import_progress.rows(job.id)
    elif job.status == "done":
        report = job.report
        counts = {key: int(report.get(key, 0)) for key in ("accepted", "updated", "duplicates", "suppressed")}
        rejected = list(report.get("rejected", []))
        view.update(counts)
        view["rejected"] = rejected
        view["rejected_count"] = int(report.get("rejected_count", len(rejected)))
        view["warnings"] = list(report.get("warnings", []))
        view["warning_count"] = int(report.get("warning_count", len(view["warnings"])))
        encoding = report.get("encoding")
        view["encoding"] = ENCODINGS.get(encoding, encoding) if encoding else ""
        view["encoding_chosen"] = bool(report.get("encoding_chosen"))
        view["rows_read"] = sum(counts.values()) + view["rejected_count"]
    else:
        view["error"] = str(job.report.get("error", ""))
    return view


@router.get("/events/{slug}/imports/{job_id}", response_class=HTMLResponse)
def import_report(
    request: Request, slug: str, job_id: int, session: SessionDep, rt: RuntimeDep
) -> HTMLResponse:
    """An import's progress while a worker reads the list, then its report: what was added, and each row
    that was not, with its line and the reason."""
    try:
        event, job = _job(session, slug, job_id)
    except NotFound:
        return _not_found(request)
    return render(request, "import_report.html", {"event": event, "job": _job_view(job, rt)})


@router.get("/events/{slug}/imports/{job_id}/progress", response_class=HTMLResponse)
def import_progress(
    request: Request, slug: str, job_id: int, session: SessionDep, rt: RuntimeDep
) -> HTMLResponse:
    """The live part of the report page, polled by app.js until the import has ended."""
    try:
        event, job = _job(session, slug, job_id)
    except NotFound:
        return _not_found(request)
    return render(request, "_import_job.html", {"event": event, "job": _job_view(job, rt)})
