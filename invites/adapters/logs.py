"""Logging: one JSON object per line in production (time, level, logger, message, and the event, campaign
and message ids a call passes with `extra=`), plain text on a developer's terminal. Celery's worker and beat
keep their own handlers and get this format through its logging signals (workers/celery_app.py);
`invites serve` hands uvicorn `uvicorn_config`."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from invites.settings import Settings

# The ids a log call may carry in `extra=`; each becomes a field of its own, so logs can be searched by them.
CONTEXT_FIELDS = ("event_id", "campaign_id", "message_id", "task_id", "invitation_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """A log record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def log_format(settings: Settings) -> str:
    """`json` or `text`: INVITES_LOG_FORMAT, else json in production and text in development."""
    return settings.log_format or ("json" if settings.env == "production" else "text")


def formatter(settings: Settings) -> logging.Formatter:
    return JsonFormatter() if log_format(settings) == "json" else logging.Formatter(TEXT_FORMAT)


def uvicorn_config(settings: Settings) -> dict[str, Any]:
    """The logging config of `invites serve` (uvicorn applies it in each of its worker processes)."""
    level = settings.log_level.upper()
    chosen = (
        {"()": "invites.adapters.logs.JsonFormatter"}
        if log_format(settings) == "json"
        else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"chosen": chosen},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "chosen", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {name: {"level": level} for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
    }


def reformat(logger: logging.Logger, settings: Settings) -> None:
    """Give the handlers Celery set up our format, when it is JSON (Celery's own text format stays)."""
    if log_format(settings) == "json":
        for handler in logger.handlers:
            handler.setFormatter(JsonFormatter())
