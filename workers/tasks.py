"""Thin tasks: parse the ids, call the service, nothing else. Names are explicit so queued work survives
a module rename."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from invites import db, privacy
from invites.embedded import client_for
from invites.locks import once_per
from invites.runtime import Runtime, broker_url
from invites.settings import get_settings
from workers.celery_app import RETENTION_SECONDS, app

T = TypeVar("T")


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


def _installation(runtime: Runtime) -> str:
    """What two beats must share to be duplicates: the same database and queue."""
    settings = runtime.settings
    return hashlib.sha256(f"{settings.resolved_database_url}|{settings.queue}".encode()).hexdigest()[:16]


def _once(name: str, period: float, body: Callable[[Runtime], T]) -> T | None:
    """Run a periodic task's body at most once per period, however many beats sent it."""
    runtime = Runtime.current()
    client = client_for(broker_url(runtime.settings))
    try:
        return once_per(client, f"{_installation(runtime)}:{name}", period, lambda: body(runtime))
    finally:
        client.close()


@app.task(name="invites.sweep_outbox")
def sweep_outbox() -> int | None:
    return _once("sweep-outbox", get_settings().sweep_seconds, lambda rt: rt.sweep(_now()))


@app.task(name="invites.purge_retention")
def purge_retention() -> int | None:
    return _once("purge-retention", RETENTION_SECONDS, _purge)


def _purge(runtime: Runtime) -> int:
    with db.transaction(runtime.sessions) as session:
        return privacy.purge_expired(session, _now(), runtime.settings.retention_days)


@app.task(name="invites.poll_replies")
def poll_replies() -> int | None:
    return _once("poll-replies", get_settings().reply_poll_seconds, lambda rt: rt.poll_replies(_now()))


@app.task(name="invites.remind")
def remind() -> int:
    """The reminder sweep: queue every reminder due now, once."""
    from invites.reminders import sweep_reminders

    runtime = Runtime.current()
    return sweep_reminders(runtime.sessions, runtime.enqueue, _now(), runtime.settings).created


@app.task(name="invites.poll_bounces")
def poll_bounces() -> int | None:
    return _once("poll-bounces", get_settings().bounce_poll_seconds, lambda rt: rt.poll_bounces(_now()))


def enqueue_batch(ids: list[int]) -> None:
    deliver_batch.delay(ids)
