"""The composition root: settings turned into the engine, sessions, templates, mailer and queue a process
uses. Built lazily, once per process, so importing anything connects nowhere."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar, TypeVar

import redis.asyncio
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from invites import db
from invites.adapters.embedded import broker_url, client_for
from invites.adapters.locks import once_per
from invites.adapters.mailbox import ImapTarget, poll_imap
from invites.adapters.mailer import SmtpPool
from invites.adapters.producer import DELIVER_BATCH, IMPORT_LIST, Producer
from invites.adapters.progress import ImportProgress
from invites.adapters.ratelimit import RateLimiter
from invites.adapters.throttle import Limits, Throttle, resolve_limits
from invites.domain import reference
from invites.messages.rendering import TemplateSet
from invites.services import bounces, delivery, imports, privacy, replies
from invites.services.reminders import sweep_reminders
from invites.settings import Settings, SmtpTarget, get_settings

T = TypeVar("T")


@dataclass
class Runtime:
    settings: Settings
    pid: int = field(default_factory=os.getpid)

    _current: ClassVar[Runtime | None] = None

    def __post_init__(self) -> None:
        self.municipalities  # noqa: B018 - a missing INVITES_MUNICIPALITIES_FILE stops the process at start

    @cached_property
    def municipalities(self) -> reference.Municipalities:
        """The reference list of municipalities (INVITES_MUNICIPALITIES_FILE, else the bundled one)."""
        return reference.load_municipalities(self.settings.municipalities_file)

    @classmethod
    def current(cls) -> Runtime:
        """This process's runtime, built from the environment's settings when there is none yet. A forked
        child builds its own from its parent's settings: connections don't survive a fork."""
        runtime = cls._current
        if runtime is None:
            runtime = cls._current = cls(get_settings())
        elif runtime.pid != os.getpid():
            runtime = cls._current = cls(runtime.settings)
        return runtime

    @classmethod
    def install(cls, settings: Settings) -> Runtime:
        """Make `settings` this process's runtime (and its forked children's): a worker that starts its own
        local sink hands its address on this way, not through the environment."""
        runtime = cls._current = cls(settings)
        return runtime

    @cached_property
    def engine(self) -> Engine:
        engine = db.make_engine(self.settings.resolved_database_url)
        db.ensure_schema(engine)
        return engine

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return db.session_factory(self.engine)

    @cached_property
    def templates(self) -> TemplateSet:
        return TemplateSet()

    def smtp_target(self) -> SmtpTarget:
        target = self.settings.smtp
        if target is None:
            raise RuntimeError(
                "INVITES_SMTP_URL is not set and no local sink runs in this process; "
                "start the worker with `invites worker`, which starts the sink"
            )
        return target

    @cached_property
    def limiter(self) -> RateLimiter:
        """This process's rate limits (RSVP pages, sign-in, registration), counted in the shared Redis."""
        settings = self.settings
        return RateLimiter(
            client_for(broker_url(settings)), settings.rsvp_client_limit, namespace=settings.queue
        )

    @cached_property
    def import_progress(self) -> ImportProgress:
        """How far each running import got, kept in Redis (fleeting: never the database's truth)."""
        return ImportProgress(client_for(broker_url(self.settings)))

    def run_import(self, job_id: int, now: datetime) -> dict[str, Any]:
        """Import a queued upload (imports.run_import_job), reporting its progress as it goes."""
        settings = self.settings
        return imports.run_import_job(
            self.sessions,
            job_id,
            settings.var_dir,
            now,
            max_bytes=settings.import_max_bytes,
            limits=imports.limits_from(settings),
            progress=lambda rows: self.import_progress.report(job_id, rows),
            places=self.municipalities,
        )

    @cached_property
    def limits(self) -> Limits:
        s = self.settings
        return resolve_limits(s.smtp_preset, s.smtp_rate, s.domain_rate, s.smtp_connections)

    @cached_property
    def loop(self) -> EventLoopThread:
        return EventLoopThread()

    @cached_property
    def composers(self) -> delivery.Composers:
        """This process's composers, kept across its batches: each event's skeleton is built once."""
        return delivery.Composers()

    @cached_property
    def pool(self) -> SmtpPool:
        """This process's SMTP connections, kept open between batches on its event loop."""
        settings = self.settings
        return SmtpPool(
            self.smtp_target(), self.limits.connections, settings.smtp_timeout, settings.smtp_verify_tls
        )

    @cached_property
    def throttle(self) -> Throttle | None:
        if not self.limits.any:
            return None
        url = broker_url(self.settings)
        client = (
            redis.asyncio.Redis(unix_socket_path=url.removeprefix("redis+socket://"))
            if url.startswith("redis+socket://")
            else redis.asyncio.Redis.from_url(url)
        )
        target = self.settings.smtp
        relay = f"{target.host}:{target.port}" if target else "local"
        return Throttle(client, self.limits, relay)

    @property
    def verp(self) -> bool:
        # Microsoft 365 refuses an envelope sender other than the authenticated mailbox.
        return self.settings.smtp_preset != "m365"

    @cached_property
    def producer(self) -> Producer:
        return Producer(self.settings, broker_url(self.settings))

    def enqueue(self, ids: list[int]) -> None:
        """Hand a batch of outbox rows to the workers (after they are committed)."""
        self.producer.send(DELIVER_BATCH, ids)

    def enqueue_import(self, job_id: int) -> None:
        """Hand a queued import job to a worker."""
        self.producer.send(IMPORT_LIST, job_id)

    def deliver(self, ids: Sequence[int], clock: Callable[[], datetime]) -> delivery.BatchResult:
        """Deliver a batch on this process's event loop, through its pooled connections."""
        pool = self.pool
        return self.loop.run(
            delivery.deliver(
                self.sessions,
                ids,
                pool,
                self.settings,
                self.templates,
                clock,
                throttle=self.loop.run(self._throttle()),
                verp=self.verp,
                composers=self.composers,
            )
        )

    def close_delivery(self) -> None:
        """Close this process's SMTP connections and Redis client, and stop its event loop."""
        if "loop" not in self.__dict__:
            return
        pool = self.__dict__.pop("pool", None)
        throttle = self.__dict__.pop("throttle", None)
        if pool is not None:
            self.loop.run(pool.close())
        if throttle is not None:
            self.loop.run(throttle.close())
        self.__dict__.pop("loop").stop()

    async def _throttle(self) -> Throttle | None:
        # Built on the loop that uses it: an asyncio Redis client belongs to one loop.
        return self.throttle

    def poll_bounces(self, now: datetime) -> int:
        """Read the bounce mailbox (INVITES_BOUNCE_IMAP_URL) once; returns how many messages were read. A
        report acted on is deleted; anything else stays, marked as read."""
        if not self.settings.bounce_imap_url:
            return 0
        target = ImapTarget.parse(self.settings.bounce_imap_url, "INVITES_BOUNCE_IMAP_URL")
        return poll_imap(
            target, lambda data: bounces.read_mailbox_message(self.sessions, data, self.settings, now)
        )

    def poll_replies(self, now: datetime) -> int:
        """Read the organiser's inbox (INVITES_REPLY_IMAP_URL) once for calendar replies; returns how many
        messages were read. A recorded reply is deleted; anything else stays, marked as read."""
        if not self.settings.reply_imap_url:
            return 0
        target = ImapTarget.parse(self.settings.reply_imap_url, "INVITES_REPLY_IMAP_URL")
        return poll_imap(
            target,
            lambda data: replies.handle_mail(self.sessions, data, now, self.settings, self.enqueue).recorded,
        )

    def sweep(self, now: datetime) -> int:
        return delivery.sweep(self.sessions, self.enqueue, now, self.settings)

    def remind(self, now: datetime) -> int:
        """The reminder sweep: queue every reminder due now; returns how many were created."""
        return sweep_reminders(self.sessions, self.enqueue, now, self.settings).created

    def purge_retention(self, now: datetime) -> int:
        with db.transaction(self.sessions) as session:
            return privacy.purge_expired(session, now, self.settings.retention_days)

    def once(self, name: str, period: float, body: Callable[[], T]) -> T | None:
        """Run `body` at most once per `period` seconds across every process of this installation (the same
        database and queue), so two beats cannot double-fire; None when another run holds the period."""
        installation = hashlib.sha256(
            f"{self.settings.resolved_database_url}|{self.settings.queue}".encode()
        ).hexdigest()[:16]
        client = client_for(broker_url(self.settings))
        try:
            return once_per(client, f"{installation}:{name}", period, body)
        finally:
            client.close()


class EventLoopThread:
    """An event loop running in a daemon thread for the life of the process.

    Celery runs tasks as plain functions; handing their coroutines to one long-lived loop lets SMTP
    connections and the Redis client outlive a task, which `asyncio.run` per task would close.
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="invites-loop", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
