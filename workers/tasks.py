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
    if result.again:
        # Due again within a couple of minutes: a short countdown, far below the visibility timeout.
        deliver_batch.apply_async((list(result.again),), countdown=result.again_in)
    return {
        "claimed": result.claimed,
        "sent": result.sent,
        "deferred": result.deferred,
        "failed": result.failed,
        "released": result.released,
    }


@app.task(name="invites.sweep_outbox")
def sweep_outbox() -> int:
    return Runtime.current().sweep(_now())


@app.task(name="invites.poll_replies")
def poll_replies() -> int:
    return Runtime.current().poll_replies(_now())


@app.task(name="invites.poll_bounces")
def poll_bounces() -> int:
    return Runtime.current().poll_bounces(_now())


def enqueue_batch(ids: list[int]) -> None:
    deliver_batch.delay(ids)
