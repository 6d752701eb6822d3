"""The import task: a large uploaded list is imported by a worker, with progress the caller can follow."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from invites.imports import run_import_job
from invites.progress import ImportProgress
from invites.runtime import Runtime
from workers.celery_app import app


@app.task(name="invites.import_list")
def import_list(job_id: int) -> dict[str, Any]:
    runtime = Runtime.current()
    progress = ImportProgress.for_settings(runtime.settings)
    return run_import_job(
        runtime.sessions,
        job_id,
        runtime.settings.var_dir,
        datetime.now(UTC),
        max_bytes=runtime.settings.import_max_bytes,
        progress=lambda rows: progress.report(job_id, rows),
    )
