"""The composition root: settings turned into the engine, sessions, templates, mailer and queue a process
uses. Built lazily, once per process, so importing anything connects nowhere."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import ClassVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from invites import db, delivery, embedded
from invites.mailer import SmtpMailer
from invites.rendering import TemplateSet
from invites.settings import Settings, get_settings


def broker_url(settings: Settings) -> str:
    """INVITES_REDIS_URL, else the embedded Redis under var/, started if need be."""
    return settings.redis_url or embedded.ensure_running(settings.var_dir)


@dataclass
class Runtime:
    settings: Settings
    pid: int = field(default_factory=os.getpid)

    _current: ClassVar[Runtime | None] = None

    @classmethod
    def current(cls) -> Runtime:
        """This process's runtime. A forked child builds its own: connections don't survive a fork."""
        runtime = cls._current
        if runtime is None or runtime.pid != os.getpid():
            runtime = cls._current = cls(get_settings())
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

    def mailer(self) -> SmtpMailer:
        target = self.settings.smtp
        if target is None:
            raise RuntimeError(
                "INVITES_SMTP_URL is not set and no local sink runs in this process; "
                "start the worker with `invites worker`, which starts the sink"
            )
        return SmtpMailer(target)

    def enqueue(self, ids: list[int]) -> None:
        from workers.tasks import enqueue_batch  # the Celery app is only loaded where work is enqueued

        enqueue_batch(ids)

    def deliver(self, ids: Sequence[int], clock: Callable[[], datetime]) -> delivery.BatchResult:
        return delivery.deliver_batch(self.sessions, ids, self.mailer(), self.settings, self.templates, clock)

    def sweep(self, now: datetime) -> int:
        return delivery.sweep(self.sessions, self.enqueue, now, self.settings)
