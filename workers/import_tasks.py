"""The import task: a large uploaded list is imported by a worker, with progress the caller can follow."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from invites.runtime import Runtime
from workers.celery_app import app


@app.task(name="invites.import_list")
def import_list(job_id: int) -> dict[str, Any]:
    return Runtime.current().run_import(job_id, datetime.now(UTC))
