"""Hands work to the Celery workers by task name, without importing them: what the web app, the CLI and the
use cases enqueue goes through here (Runtime.enqueue). The names are the workers' explicit task names
(workers/tasks.py), which never change, so queued work always finds its task."""

from __future__ import annotations

from typing import Any

from celery import Celery

from invites.settings import Settings

DELIVER_BATCH = "invites.deliver_batch"
IMPORT_LIST = "invites.import_list"


class Producer:
    """A Celery client for one process: sends tasks to the workers' queue on the broker."""

    def __init__(self, settings: Settings, broker: str) -> None:
        self.queue = settings.queue
        self.app = Celery("invites-producer", set_as_current=False)
        self.app.conf.update(
            broker_url=broker,
            broker_connection_retry_on_startup=True,
            broker_transport_options={"visibility_timeout": settings.visibility_timeout},
            task_serializer="json",
            accept_content=["json"],
            task_ignore_result=True,
            task_default_queue=settings.queue,
        )

    def send(self, name: str, *args: Any) -> None:
        self.app.send_task(name, args=list(args), queue=self.queue)
