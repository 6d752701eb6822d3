"""Logging: one JSON object per line in production (time, level, logger, message, and the event, campaign
and message ids a call passes with `extra=`), plain text on a developer's terminal. Celery's worker and beat
keep their own handlers and get this format through its logging signals (workers/celery_app.py);
`invites serve` hands uvicorn `uvicorn_config`.

Every line is redacted on its way out, in both formats: a recipient's token (`/r/…`, `/u/…`, `?via=`, and
anything shaped like one) would let whoever reads the logs answer or unsubscribe in that person's name, so
only its first characters are kept, enough to tell two lines about the same link apart."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from invites.settings import Settings

# The ids a log call may carry in `extra=`; each becomes a field of its own, so logs can be searched by them.
CONTEXT_FIELDS = ("event_id", "campaign_id", "message_id", "task_id", "invitation_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What of a token a log line keeps: enough to correlate lines, far too little to use (the public id alone is
# 16 characters and the MAC behind it 22).
KEPT = 4
# The routes whose next path segment is a token (/r/{token}, /r/{token}/invite.ics, /u/{token}), the query
# parameters that carry one (/e/{slug}/register?via=), and a token's own shape (`<public id>.<mac>`,
# domain/tokens.py) wherever else it turns up: a mailto's subject, a message, a traceback.
TOKEN_PATH = re.compile(r"(/[ru]/)([^/?#\s\"'<>\\]+)")
TOKEN_QUERY = re.compile(r"([?&;](?:via|token)=)([^&#\s\"'<>\\]+)", re.IGNORECASE)
TOKEN_SHAPE = re.compile(r"([\w-]{16})\.[\w-]{22}(?![\w-])", re.ASCII)


def _kept(match: re.Match[str]) -> str:
    return match[1] + match[2][:KEPT] + "…"


def redact(line: str) -> str:
    """`line` with every token cut to its first few characters and "…"; the path around it stays."""
    line = TOKEN_SHAPE.sub(lambda match: match[1][:KEPT] + "…", line)
    line = TOKEN_PATH.sub(_kept, line)
    return TOKEN_QUERY.sub(_kept, line)


class JsonFormatter(logging.Formatter):
    """A log record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The plain-text line of a developer's terminal, redacted."""

    def __init__(self, fmt: str = TEXT_FORMAT) -> None:
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class Redacted(logging.Formatter):
    """Another formatter's line, redacted: for the handlers Celery sets up with a text format of its own."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


def log_format(settings: Settings) -> str:
    """`json` or `text`: INVITES_LOG_FORMAT, else json in production and text in development."""
    return settings.log_format or ("json" if settings.env == "production" else "text")


def formatter(settings: Settings) -> logging.Formatter:
    return JsonFormatter() if log_format(settings) == "json" else TextFormatter()


UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def uvicorn_config(settings: Settings) -> dict[str, Any]:
    """The logging config of `invites serve` (uvicorn applies it in each of its worker processes)."""
    level = settings.log_level.upper()
    chosen = {
        "()": "invites.adapters.logs.JsonFormatter"
        if log_format(settings) == "json"
        else "invites.adapters.logs.TextFormatter"
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"chosen": chosen},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "chosen", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["stderr"], "level": level},
        # Said outright: uvicorn's own default config (applied earlier in the same process, as in tests or
        # an embedding app) leaves uvicorn.access with propagate off, and its lines would go nowhere.
        "loggers": {name: {"level": level, "propagate": True} for name in UVICORN_LOGGERS},
    }


def reformat(logger: logging.Logger, settings: Settings) -> None:
    """Give the handlers Celery set up our format when it is JSON; Celery's text format stays, redacted."""
    for handler in logger.handlers:
        if log_format(settings) == "json":
            handler.setFormatter(JsonFormatter())
        elif not isinstance(handler.formatter, Redacted):
            handler.setFormatter(Redacted(handler.formatter or logging.Formatter()))
