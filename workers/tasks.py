"""Thin tasks: parse the ids, call the service, nothing else. Names are explicit so queued work survives
a module rename."""

from __future__ import annotations

from datetime import UTC, datetime

from invites.runtime import Runtime
from workers.celery_app import RETENTION_SECONDS, app


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


# Periodic tasks run their body at most once per period, however many beats sent them (Runtime.once).


@app.task(name="invites.sweep_outbox")
def sweep_outbox() -> int | None:
    runtime = Runtime.current()
    return runtime.once("sweep-outbox", runtime.settings.sweep_seconds, lambda: runtime.sweep(_now()))


@app.task(name="invites.purge_retention")
def purge_retention() -> int | None:
    runtime = Runtime.current()
    return runtime.once("purge-retention", RETENTION_SECONDS, lambda: runtime.purge_retention(_now()))


@app.task(name="invites.poll_replies")
def poll_replies() -> int | None:
    runtime = Runtime.current()
    return runtime.once(
        "poll-replies", runtime.settings.reply_poll_seconds, lambda: runtime.poll_replies(_now())
    )


@app.task(name="invites.remind")
def remind() -> int | None:
    runtime = Runtime.current()
    return runtime.once("remind", runtime.settings.sweep_seconds, lambda: runtime.remind(_now()))


@app.task(name="invites.poll_bounces")
def poll_bounces() -> int | None:
    runtime = Runtime.current()
    return runtime.once(
        "poll-bounces", runtime.settings.bounce_poll_seconds, lambda: runtime.poll_bounces(_now())
    )


def enqueue_batch(ids: list[int]) -> None:
    deliver_batch.delay(ids)
