"""Thin tasks: parse the ids, call the service, nothing else. Names are explicit so queued work survives
a module rename."""

from __future__ import annotations

from datetime import UTC, datetime

from invites.runtime import Runtime
from workers.celery_app import app


def _now() -> datetime:
    return datetime.now(UTC)


@app.task(name="invites.deliver_batch")
def deliver_batch(ids: list[int]) -> dict[str, int]:
    runtime = Runtime.current()
    result = runtime.deliver(ids, _now)
    return {
        "claimed": result.claimed,
        "sent": result.sent,
        "deferred": result.deferred,
        "failed": result.failed,
    }


@app.task(name="invites.sweep_outbox")
def sweep_outbox() -> int:
    return Runtime.current().sweep(_now())


def enqueue_batch(ids: list[int]) -> None:
    deliver_batch.delay(ids)
