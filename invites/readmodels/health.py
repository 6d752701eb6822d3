"""Readiness: can this process reach the database, Redis and the SMTP relay? Each check says which one
fails and why, so an orchestrator (and the person on call) sees what to fix.

`Readiness` runs the checks off the request path: at most one run at a time, in a thread of its own, and
its result is served for INVITES_HEALTH_CACHE_SECONDS. A probe that asks a hundred times a second, or a
relay that never greets, then costs one SMTP session every few seconds and holds none of the threads that
serve the pages."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy import Engine, text

from invites.adapters.embedded import broker_url
from invites.settings import Settings

TIMEOUT = 3.0
# How long the very first request waits for the first run (each of the three checks gives up after TIMEOUT).
FIRST_WAIT = 3 * TIMEOUT + 1.0
Check = dict[str, Any]

log = logging.getLogger(__name__)


def _failed(exc: BaseException) -> Check:
    return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def redis_client(url: str) -> redis.Redis:
    """A client for the broker URL that gives up after TIMEOUT seconds instead of hanging a probe."""
    if url.startswith("redis+socket://"):
        return redis.Redis(unix_socket_path=url.removeprefix("redis+socket://"), socket_timeout=TIMEOUT)
    return redis.Redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)


def check_database(engine: Callable[[], Engine]) -> Check:
    """`engine` is called inside the check: building it checks the schema, so a database that is down is
    reported here, not raised."""
    try:
        with engine().connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means "not ready", with its text
        return _failed(exc)
    return {"ok": True}


def check_redis(settings: Settings) -> Check:
    try:
        client = redis_client(broker_url(settings))
    except Exception as exc:  # the embedded Redis could not be started
        return _failed(exc)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return _failed(exc)
    finally:
        client.close()
    return {"ok": True}


def check_smtp(settings: Settings) -> Check:
    target = settings.smtp
    if target is None:
        return {"ok": True, "detail": "local sink"}
    try:
        if target.implicit_tls:
            context = ssl.create_default_context()
            if not settings.smtp_verify_tls:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            connection: smtplib.SMTP = smtplib.SMTP_SSL(
                target.host, target.port, timeout=TIMEOUT, context=context
            )
        else:
            connection = smtplib.SMTP(target.host, target.port, timeout=TIMEOUT)
        with connection:
            connection.ehlo()
            code, reply = connection.noop()
    except (smtplib.SMTPException, OSError) as exc:
        return _failed(exc)
    if code != 250:
        return {"ok": False, "error": f"NOOP answered {code} {reply.decode(errors='replace')}"}
    return {"ok": True, "detail": f"{target.host}:{target.port}"}


def readiness(engine: Callable[[], Engine], settings: Settings) -> dict[str, Check]:
    """The state of every dependency, by name."""
    return {
        "database": check_database(engine),
        "redis": check_redis(settings),
        "smtp": check_smtp(settings),
    }


@dataclass(frozen=True)
class Report:
    """One run of the checks: each dependency's state, and when the run finished."""

    checks: dict[str, Check]
    checked_at: datetime | None

    @property
    def ok(self) -> bool:
        return all(check["ok"] for check in self.checks.values())


NOT_YET = Report({"readiness": {"ok": False, "error": "the first check has not finished yet"}}, None)


class Readiness:
    """The last report of `check`, refreshed in a thread when it is older than `max_age` seconds."""

    def __init__(self, check: Callable[[], dict[str, Check]], max_age: float) -> None:
        self._check = check
        self._max_age = max_age
        self._lock = threading.Lock()
        self._last: Report | None = None
        self._finished = float("-inf")  # time.monotonic() of the last run's end
        self._running: Future[Report] | None = None

    def _run(self, future: Future[Report]) -> None:
        try:
            report = Report(self._check(), datetime.now(UTC))
        except Exception as exc:  # the checks catch their own errors; this is a bug, reported as not ready
            log.exception("the readiness check failed")
            report = Report({"readiness": _failed(exc)}, datetime.now(UTC))
        with self._lock:
            self._last, self._finished, self._running = report, time.monotonic(), None
        future.set_result(report)

    def _refresh(self) -> Future[Report]:
        """The run in progress, else a new one; call with the lock held."""
        if self._running is None:
            self._running = Future()
            threading.Thread(target=self._run, args=(self._running,), name="readiness", daemon=True).start()
        return self._running

    def cached(self) -> tuple[Report | None, Future[Report] | None]:
        """The last report (None before the first), and the run to wait for when there is none yet."""
        with self._lock:
            stale = time.monotonic() - self._finished >= self._max_age
            return self._last, self._refresh() if stale else self._running

    async def report(self) -> Report:
        """The last report, at once; only before the first has finished, wait for it (up to FIRST_WAIT)."""
        last, running = self.cached()
        if last is not None or running is None:
            return last or NOT_YET
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(running)), FIRST_WAIT)
        except TimeoutError:
            return NOT_YET
