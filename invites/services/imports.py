"""Use case: import a recipient list into an event's audience.

Rows are read one at a time and stored a chunk at a time, so memory stays flat however long the list is.
Everything happens in the caller's transaction: a crash or a `--strict` rejection stores nothing.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePath
from typing import IO, Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from invites.db.models import Event, ImportJob, Invitation, Recipient
from invites.domain.audience import (
    DEFAULT_LIMITS,
    REPORT_KEEP,
    Limits,
    Person,
    Rejection,
    RowReader,
    Table,
    as_json,
    dutch_number,
    open_table,
    quote,
)
from invites.domain.errors import InputError, TooLarge
from invites.domain.reference import Municipalities
from invites.domain.states import InvitationSource
from invites.domain.tokens import new_public_id
from invites.services.events import get_event
from invites.services.suppression import suppressed_among
from invites.settings import Settings

PERSON_FIELDS = (
    "email",
    "first_name",
    "name_prefix",
    "last_name",
    "display_name",
    "salutation",
    "role_key",
    "role_label",
    "municipality_code",
    "organisation",
    "language",
)
log = logging.getLogger(__name__)
CHUNK = 1000
DEFAULT_MAX_BYTES = 20 * 1024 * 1024

Progress = Callable[[int], None]


# A kept reason is cut to this length, so a report stays small however the file is made.
REASON_CHARS = 300


@dataclass
class ImportReport:
    """What an import did. It keeps the first REPORT_KEEP rejections and warnings and counts them all, so
    a file of a million bad lines makes a report of a thousand."""

    accepted: int = 0
    updated: int = 0
    duplicates: int = 0
    suppressed: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rejected_count: int = 0
    warning_count: int = 0
    # The CSV file's encoding (None for a workbook), and whether the organiser chose it.
    encoding: str | None = None
    encoding_chosen: bool = False

    def reject(self, rejection: Rejection) -> None:
        self.rejected_count += 1
        if len(self.rejected) < REPORT_KEEP:
            reason = rejection.reason
            if len(reason) > REASON_CHARS:
                rejection = Rejection(
                    rejection.line, rejection.column[:100], reason[:REASON_CHARS] + "\u2026"
                )
            self.rejected.append(rejection)

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "updated": self.updated,
            "duplicates": self.duplicates,
            "suppressed": self.suppressed,
            "rejected_count": self.rejected_count,
            "rejected": as_json(self.rejected),
            "warning_count": self.warning_count,
            "warnings": self.warnings,
            "encoding": self.encoding,
            "encoding_chosen": self.encoding_chosen,
        }


def limits_from(settings: Settings) -> Limits:
    """The import limits these settings set (INVITES_IMPORT_MAX_*)."""
    return Limits(
        max_uncompressed_bytes=settings.import_max_uncompressed_bytes,
        max_member_bytes=settings.import_max_member_bytes,
        max_compression_ratio=settings.import_max_compression_ratio,
        max_cell_chars=settings.import_max_cell_chars,
        max_rows=settings.import_max_rows,
        max_rejections=settings.import_max_rejections,
    )


def import_list(
    session: Session,
    event: Event,
    data: bytes,
    filename: str,
    now: datetime,
    strict: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    places: Municipalities | None = None,
    encoding: str | None = None,
) -> ImportReport:
    """Import a list held in memory; see `import_stream`."""
    return import_stream(
        session,
        event,
        io.BytesIO(data),
        filename,
        len(data),
        now,
        strict=strict,
        max_bytes=max_bytes,
        match_place=places.match if places else None,
        encoding=encoding,
    )


def import_stream(
    session: Session,
    event: Event,
    stream: IO[bytes],
    filename: str,
    size: int,
    now: datetime,
    *,
    strict: bool = False,
    sheet: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    encoding: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    match_place: Callable[[str], str | None] | None = None,
    progress: Progress | None = None,
    job: ImportJob | None = None,
) -> ImportReport:
    """Add the people in a list to the event's audience, and update the ones it already has.

    Records an ImportJob with the report. Raises InputError for a file that cannot be read at all (in
    `encoding`, when given), with `strict` when any row is rejected, and past the limits' rows or
    rejections; the caller's transaction then stores nothing.
    """
    try:
        table = open_table(stream, filename, size, max_bytes, sheet, encoding=encoding, limits=limits)
        reader = RowReader(table.header, match_place)
    except InputError as exc:
        raise InputError(f"{filename}: {exc}") from exc
    if job is None:
        job = ImportJob(event_id=event.id, filename=filename, created_at=now)
        session.add(job)
    job.status = "running"
    session.flush()
    report = _import_rows(session, event, job, table, reader, now, progress, limits)
    report.warnings, report.warning_count = reader.warnings, reader.warning_count
    report.encoding = table.encoding
    report.encoding_chosen = table.encoding is not None and bool(encoding) and encoding != "auto"
    if strict and report.rejected:
        first = report.rejected[0]
        raise InputError(
            f"{filename}: {report.rejected_count} rows rejected, so nothing was imported "
            f"(first: line {first.line}, column {first.column!r}: {first.reason})"
        )
    job.status = "done"
    job.finished_at = now
    job.counts = {k: v for k, v in report.as_dict().items() if isinstance(v, int)}
    job.report = report.as_dict()
    session.flush()
    return report


def _import_rows(
    session: Session,
    event: Event,
    job: ImportJob,
    table: Table,
    reader: RowReader,
    now: datetime,
    progress: Progress | None,
    limits: Limits,
) -> ImportReport:
    report = ImportReport()
    seen: set[str] = set()
    chunk: list[Person] = []
    rows = 0
    try:
        for line, cells in table.rows:
            rows += 1
            if rows > limits.max_rows:
                raise InputError(
                    f"de lijst heeft meer dan {dutch_number(limits.max_rows)} rijen "
                    f"(INVITES_IMPORT_MAX_ROWS; regel {dutch_number(line)}), dus er is niets "
                    "geïmporteerd: verdeel haar over kleinere bestanden"
                )
            found = reader.read(line, cells)
            if isinstance(found, Rejection):
                report.reject(found)
                if report.rejected_count > limits.max_rejections:
                    first = report.rejected[0]
                    raise InputError(
                        f"meer dan {dutch_number(limits.max_rejections)} rijen afgewezen "
                        f"(INVITES_IMPORT_MAX_REJECTIONS; de eerste: regel {first.line}, kolom "
                        f"{quote(first.column)}: {first.reason}), dus er is niets geïmporteerd: is dit de "
                        "goede lijst? Verbeter haar en upload haar opnieuw"
                    )
            elif found.email_key in seen:
                report.duplicates += 1
            else:
                seen.add(found.email_key)
                chunk.append(found)
            if len(chunk) >= CHUNK:
                _store(session, event, job, chunk, report, now)
                chunk = []
                if progress:
                    progress(rows)
    except InputError as exc:
        raise InputError(f"{job.filename}: {exc}") from exc
    _store(session, event, job, chunk, report, now)
    if progress:
        progress(rows)
    return report


def _store(
    session: Session, event: Event, job: ImportJob, people: list[Person], report: ImportReport, now: datetime
) -> None:
    """Store one chunk with a handful of statements, whatever its size."""
    if not people:
        return
    keys = [person.email_key for person in people]
    suppressed = suppressed_among(session, keys)
    if suppressed:
        report.suppressed += sum(1 for person in people if person.email_key in suppressed)
        people = [person for person in people if person.email_key not in suppressed]
    existing = _existing(session, keys)
    ids = _insert_recipients(session, [person for person in people if person.email_key not in existing], now)
    known = [person for person in people if person.email_key in existing]
    _update_recipients(session, known, existing, now)
    ids.update({person.email_key: existing[person.email_key][0] for person in known})
    added = _add_invitations(session, event, job, people, ids, now)
    report.accepted += added
    report.updated += len(people) - added


# A recipient already stored, by email key: its id, attributes and tags.
_Existing = dict[str, tuple[int, dict[str, Any], list[Any]]]


def _existing(session: Session, keys: list[str]) -> _Existing:
    return {
        key: (recipient_id, attributes, tags)
        for recipient_id, key, attributes, tags in session.execute(
            select(Recipient.id, Recipient.email_key, Recipient.attributes, Recipient.tags).where(
                Recipient.email_key.in_(keys)
            )
        )
    }


def _insert_recipients(session: Session, fresh: list[Person], now: datetime) -> dict[str, int]:
    """Insert these people as new recipients; returns their ids by email key."""
    if not fresh:
        return {}
    inserted = session.execute(
        insert(Recipient).returning(Recipient.id, Recipient.email_key),
        [
            {
                **_fields(person),
                "email_key": person.email_key,
                "attributes": person.attributes,
                "tags": sorted(set(person.tags)),
                "undeliverable": False,
                "created_at": now,
                "updated_at": now,
            }
            for person in fresh
        ],
    )
    return {key: recipient_id for recipient_id, key in inserted}


def _update_recipients(session: Session, known: list[Person], existing: _Existing, now: datetime) -> None:
    """Overwrite the stored recipients' fields with the list's, adding to their attributes and tags."""
    if not known:
        return
    session.execute(
        update(Recipient),
        [
            {
                "id": existing[person.email_key][0],
                **_fields(person),
                "attributes": {**(existing[person.email_key][1] or {}), **person.attributes},
                "tags": sorted(set(existing[person.email_key][2] or []) | set(person.tags)),
                "updated_at": now,
            }
            for person in known
        ],
    )


def _add_invitations(
    session: Session, event: Event, job: ImportJob, people: list[Person], ids: dict[str, int], now: datetime
) -> int:
    """Invite those of these people who are not invited to the event yet; returns how many that were."""
    invited = set(
        session.scalars(
            select(Invitation.recipient_id).where(
                Invitation.event_id == event.id, Invitation.recipient_id.in_(ids.values())
            )
        )
    )
    new_invitations = [
        {
            "event_id": event.id,
            "recipient_id": ids[person.email_key],
            "public_id": new_public_id(),
            "token_version": 1,
            "source": InvitationSource.IMPORT,
            "guests": 0,
            "responses": {},
            "import_job_id": job.id,
            "created_at": now,
        }
        for person in people
        if ids[person.email_key] not in invited
    ]
    if new_invitations:
        session.execute(insert(Invitation), new_invitations)
    return len(new_invitations)


def _fields(person: Person) -> dict[str, Any]:
    return {name: getattr(person, name) for name in PERSON_FIELDS}


def upload_path(var_dir: Path, job_id: int) -> Path:
    """Where an uploaded list waits for its import task."""
    return var_dir / "imports" / f"{job_id}.upload"


def queue_import(
    session: Session,
    event: Event,
    stream: IO[bytes],
    filename: str,
    var_dir: Path,
    now: datetime,
    *,
    strict: bool = False,
    sheet: str | None = None,
    encoding: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ImportJob:
    """Store an upload and record a queued import job for it; the caller commits, then enqueues the job id.

    The size limit is enforced while copying, so an oversized upload never fills the disk.
    """
    job = ImportJob(
        event_id=event.id,
        filename=PurePath(filename).name or "upload",
        status="queued",
        created_at=now,
        report={"options": {"strict": strict, "sheet": sheet, "encoding": encoding}},
    )
    session.add(job)
    session.flush()
    target = upload_path(var_dir, job.id)
    target.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with target.open("wb") as out:
        while chunk := stream.read(1 << 20):
            size += len(chunk)
            if size > max_bytes:
                out.close()
                target.unlink()
                raise TooLarge(f"{filename}: the file is over the limit of {max_bytes:,} bytes")
            out.write(chunk)
    job.counts = {"bytes": size}
    return job


def submit_import(
    factory: sessionmaker[Session],
    settings: Settings,
    slug: str,
    stream: IO[bytes],
    filename: str,
    enqueue: Callable[[int], None],
    now: datetime,
    *,
    strict: bool = False,
    sheet: str | None = None,
    encoding: str | None = None,
) -> int:
    """The use case of uploading a list, for the web page and the API alike: store the upload, refuse a file
    no import could read (check_upload), commit a queued import job, then hand its id to a worker
    (`enqueue`). Returns the job's id.

    `encoding` is the organiser's choice for a CSV file (empty or "auto": detected).
    Raises NotFound for an unknown event, TooLarge over INVITES_IMPORT_MAX_BYTES, InputError for a file no
    import could read (not in that encoding, a workbook past the INVITES_IMPORT_MAX_* limits); then
    nothing is kept.
    """
    with factory() as session:
        try:
            job = queue_import(
                session,
                get_event(session, slug),
                stream,
                filename,
                settings.var_dir,
                now,
                strict=strict,
                sheet=sheet,
                encoding=encoding,
                max_bytes=settings.import_max_bytes,
            )
            check_upload(settings.var_dir, job, sheet, encoding=encoding, limits=limits_from(settings))
            job_id = job.id
            session.commit()
        except InputError:
            session.rollback()
            raise
    enqueue(job_id)
    return job_id


def check_upload(
    var_dir: Path,
    job: ImportJob,
    sheet: str | None = None,
    *,
    encoding: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> None:
    """Refuse a stored upload that no import could read (not CSV or .xlsx, empty, no such sheet, no e-mail
    column), so the organiser hears it at once rather than from a failed job. Deletes the stored file when
    it refuses; the caller then rolls back the queued job."""
    path = upload_path(var_dir, job.id)
    try:
        with path.open("rb") as stream:
            size = path.stat().st_size
            table = open_table(stream, job.filename, size, size, sheet, encoding=encoding, limits=limits)
            try:
                RowReader(table.header)
            finally:
                # Reading a row and stopping lets go of the stream (CSV) or closes the workbook (Excel).
                next(table.rows, None)
                getattr(table.rows, "close", lambda: None)()
    except InputError as exc:
        path.unlink(missing_ok=True)
        raise InputError(f"{job.filename}: {exc}") from exc


def run_import_job(
    factory: sessionmaker[Session],
    job_id: int,
    var_dir: Path,
    now: datetime,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    limits: Limits = DEFAULT_LIMITS,
    progress: Progress | None = None,
    places: Municipalities | None = None,
) -> dict[str, Any]:
    """Import a queued upload in one transaction, then record the report (or the error) on the job.

    Running it again for a job that is already done changes nothing.
    """
    path = upload_path(var_dir, job_id)
    with factory() as session:
        job = session.get(ImportJob, job_id)
        if job is None:
            raise InputError(f"no import job {job_id}")
        if job.status in ("done", "failed"):
            return dict(job.report)
        options = dict(job.report.get("options", {}))
        try:
            event = session.get_one(Event, job.event_id)
            with path.open("rb") as stream:
                report = import_stream(
                    session,
                    event,
                    stream,
                    job.filename,
                    path.stat().st_size,
                    now,
                    strict=bool(options.get("strict")),
                    sheet=options.get("sheet"),
                    encoding=options.get("encoding"),
                    max_bytes=max_bytes,
                    match_place=places.match if places else None,
                    limits=limits,
                    progress=progress,
                    job=job,
                )
            session.commit()
            result = report.as_dict()
        except (InputError, OSError) as exc:
            _fail(session, job_id, str(exc), now)
            result = {"error": str(exc)}
        except Exception as exc:
            # Anything else is our fault: the job must still end, or its caller would wait forever.
            log.exception("import job %s failed", job_id)
            _fail(
                session,
                job_id,
                f"the import failed unexpectedly ({type(exc).__name__}); see the worker log",
                now,
            )
            raise
        path.unlink(missing_ok=True)
        return result


def _fail(session: Session, job_id: int, error: str, now: datetime) -> None:
    session.rollback()
    job = session.get_one(ImportJob, job_id)
    job.status = "failed"
    job.finished_at = now
    job.report = {"error": error}
    session.commit()
