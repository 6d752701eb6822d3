"""The Celery app. Its broker is configured lazily from the settings, so importing this connects nowhere."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.schedules import crontab
from celery.signals import worker_init

from invites.runtime import broker_url
from invites.settings import get_settings
from invites.sink import Sink

app = Celery("invites", include=["workers.tasks"])


@app.on_configure.connect
def _configure(sender: Celery, **_: Any) -> None:
    settings = get_settings()
    visibility = settings.visibility_timeout
    sender.conf.update(
        broker_url=broker_url(settings),
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": visibility},
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # A task is acknowledged only when it has finished, and comes back if its worker dies mid-way;
        # the outbox claim makes the rerun harmless.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.queue,
        timezone="UTC",
        beat_schedule={
            "sweep-outbox": {"task": "invites.sweep_outbox", "schedule": crontab(minute="*")},
        },
    )


@worker_init.connect
def _start_local_sink(**_: Any) -> None:
    """Without INVITES_SMTP_URL, the worker delivers to a local sink that stores .eml files under var/.

    It starts in the worker's main process, before the pool forks, so every child inherits its address.
    """
    settings = get_settings()
    if settings.smtp_url:
        return
    sink = Sink(settings.outbox_dir).start()
    os.environ["INVITES_SMTP_URL"] = sink.url
    get_settings.cache_clear()
