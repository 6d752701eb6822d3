"""The Celery app. Its broker is configured lazily from the settings, so importing this connects nowhere."""

from __future__ import annotations

import logging
import sys
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, worker_init, worker_process_shutdown

from invites.adapters import logs
from invites.adapters.embedded import broker_url
from invites.adapters.mailer import shared_tls_context
from invites.adapters.sink import Sink
from invites.runtime import Runtime
from invites.settings import UnfitForProduction, get_settings

app = Celery("invites", include=["workers.tasks", "workers.import_tasks"])
# The retention purge runs daily; a purge looks at whole days, so a later hour changes nothing.
RETENTION_SECONDS = 24 * 3600


@app.on_configure.connect
def _configure(sender: Celery, **_: Any) -> None:
    try:
        settings = get_settings()
    except UnfitForProduction as exc:
        # Celery logs a signal receiver's exception and carries on unconfigured; this must stop the process.
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(2) from exc
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
            "sweep-outbox": {"task": "invites.sweep_outbox", "schedule": float(settings.sweep_seconds)},
            # Every minute (as often as the outbox sweep): a reminder is due on a minute at the finest.
            "remind": {"task": "invites.remind", "schedule": float(settings.sweep_seconds)},
            **(
                {"purge-retention": {"task": "invites.purge_retention", "schedule": float(RETENTION_SECONDS)}}
                if settings.retention_days > 0
                else {}
            ),
            **(
                {
                    "poll-bounces": {
                        "task": "invites.poll_bounces",
                        "schedule": float(settings.bounce_poll_seconds),
                    }
                }
                if settings.bounce_imap_url
                else {}
            ),
            **(
                {
                    "poll-replies": {
                        "task": "invites.poll_replies",
                        "schedule": float(settings.reply_poll_seconds),
                    }
                }
                if settings.reply_imap_url
                else {}
            ),
        },
    )


@after_setup_logger.connect
@after_setup_task_logger.connect
def _json_logs(logger: logging.Logger, **_: Any) -> None:
    """JSON lines in production (INVITES_LOG_FORMAT), for the worker's and beat's own loggers alike."""
    logs.reformat(logger, Runtime.current().settings)


@worker_init.connect
def _start_local_sink(**_: Any) -> None:
    """Without INVITES_SMTP_URL, the worker delivers to a local sink that stores .eml files under var/.

    It starts in the worker's main process, before the pool forks, so every child inherits its address;
    so does the TLS context for SMTP, built here once instead of in every child.
    """
    settings = Runtime.current().settings
    shared_tls_context(settings.smtp_verify_tls)
    if settings.smtp_url:
        return
    sink = Sink(settings.outbox_dir).start()
    Runtime.install(settings.model_copy(update={"smtp_url": sink.url}))


@worker_process_shutdown.connect
def _close_connections(**_: Any) -> None:
    """Say QUIT to the SMTP relay instead of dropping the pooled connections."""
    Runtime.current().close_delivery()
