"""Readiness: can this process reach the database, Redis and the SMTP relay? Each check says which one
fails and why, so an orchestrator (and the person on call) sees what to fix."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from typing import Any

import redis
from sqlalchemy import Engine, text

from invites.adapters.embedded import broker_url
from invites.settings import Settings

TIMEOUT = 3.0
Check = dict[str, Any]


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
