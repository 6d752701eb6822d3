"""JSON log lines: one object per line, with the ids a call passes; the format each mode chooses; and no
recipient's token in any line, whichever formatter writes it."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import sys

import pytest

from invites.adapters.logs import (
    JsonFormatter,
    Redacted,
    TextFormatter,
    formatter,
    log_format,
    redact,
    reformat,
    uvicorn_config,
)
from invites.domain.tokens import make_token, new_public_id, unsubscribe_token
from invites.settings import Settings

# Fixed, so every test process collects the same parameter ids.
TOKEN = make_token("test-secret-key", "vp2nxQ0aK7pLm3Rs", 1)
CUT = TOKEN[:4] + "…"


def record(**extra: object) -> logging.LogRecord:
    made = logging.getLogger("invites.services.delivery").makeRecord(
        "invites.services.delivery",
        logging.INFO,
        __file__,
        1,
        "message %s to %s: %s",
        (7, "a@example.org", "sent"),
        None,
    )
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_a_record_is_one_line_of_json_with_its_ids() -> None:
    line = JsonFormatter().format(record(event_id=1, campaign_id=2, message_id=7))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "invites.services.delivery"
    assert entry["message"] == "message 7 to a@example.org: sent"
    assert (entry["event_id"], entry["campaign_id"], entry["message_id"]) == (1, 2, 7)
    assert entry["time"].endswith("+00:00")


def test_ids_not_given_are_left_out_and_exceptions_kept() -> None:
    try:
        raise ValueError("kapot")
    except ValueError:
        failed = record()
        failed.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(failed))
    assert "event_id" not in entry and "message_id" not in entry
    assert "ValueError: kapot" in entry["exception"]


def test_json_in_production_text_in_development_unless_chosen() -> None:
    good = {"secret_key": "x" * 40, "base_url": "https://invites.example.org"}
    assert log_format(Settings(**good)) == "text"
    assert log_format(Settings(env="production", **good)) == "json"
    assert log_format(Settings(env="production", log_format="text", **good)) == "text"
    assert isinstance(formatter(Settings(log_format="json")), JsonFormatter)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f'127.0.0.1:5 - "HEAD /r/{TOKEN} HTTP/1.1" 200', f'127.0.0.1:5 - "HEAD /r/{CUT} HTTP/1.1" 200'),
        (f"GET /r/{TOKEN}/invite.ics", f"GET /r/{CUT}/invite.ics"),
        (f"GET /r/{TOKEN}?answer=declined&lang=en", f"GET /r/{CUT}?answer=declined&lang=en"),
        (f"POST /u/{TOKEN}", f"POST /u/{CUT}"),
        (f"GET /e/raad/register?lang=en&via={TOKEN}", f"GET /e/raad/register?lang=en&via={CUT}"),
        (f"https://invites.example.org/r/{TOKEN}", f"https://invites.example.org/r/{CUT}"),
        (f"mailto:x@example.org?subject=u-{TOKEN}", f"mailto:x@example.org?subject=u-{CUT}"),
        ("GET /r/kort HTTP/1.1", "GET /r/kort… HTTP/1.1"),  # whatever follows /r/ is cut, shaped or not
        ("GET /events/raad/audience?role=burgemeester", "GET /events/raad/audience?role=burgemeester"),
        ("GET /api/v1/imports/12 HTTP/1.1", "GET /api/v1/imports/12 HTTP/1.1"),
    ],
)
def test_redact_keeps_the_shape_and_cuts_the_token(line: str, expected: str) -> None:
    assert redact(line) == expected
    assert redact(expected) == expected  # twice is once


def test_a_token_is_cut_wherever_it_stands() -> None:
    leave = unsubscribe_token("test-secret-key", new_public_id())
    assert redact(f"answer for {TOKEN} recorded; unsubscribed {leave}") == (
        f"answer for {TOKEN[:4]}… recorded; unsubscribed {leave[:4]}…"
    )


def token_record() -> logging.LogRecord:
    try:
        raise ValueError(f"no invitation for /r/{TOKEN}")
    except ValueError:
        made = logging.getLogger("invites.web").makeRecord(
            "invites.web", logging.WARNING, __file__, 1, "page %s failed", (f"/r/{TOKEN}",), sys.exc_info()
        )
    return made


@pytest.mark.parametrize("chosen", ["json", "text"])
def test_every_formatter_we_install_redacts_message_and_traceback(chosen: str) -> None:
    line = formatter(Settings(log_format=chosen)).format(token_record())
    assert TOKEN not in line and TOKEN.partition(".")[2] not in line
    assert f"/r/{TOKEN[:4]}…" in line
    assert "ValueError: no invitation for /r/" in line


@pytest.mark.parametrize("chosen", ["json", "text"])
def test_the_uvicorn_config_redacts_our_loggers_and_uvicorn_access(chosen: str) -> None:
    """The dict `invites serve` hands uvicorn, applied: our loggers and uvicorn's both come out redacted."""
    config = uvicorn_config(Settings(log_format=chosen))
    stream = io.StringIO()
    config["handlers"]["stderr"] = {"class": "logging.StreamHandler", "formatter": "chosen", "stream": stream}
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        logging.config.dictConfig(config)
        logging.getLogger("invites.services.rsvp").info("opened %s", f"/r/{TOKEN}")
        access = logging.getLogger("uvicorn.access")
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", f"/u/{TOKEN}", "1.1", 200)
    finally:
        root.handlers[:], root.level = saved
    written = stream.getvalue().replace('\\"', '"')  # JSON escapes the access line's quotes
    assert TOKEN not in written
    assert f"opened /r/{TOKEN[:4]}…" in written
    assert f'"GET /u/{TOKEN[:4]}… HTTP/1.1" 200' in written
    assert len(written.splitlines()) == 2


def test_celery_handlers_keep_their_text_format_redacted_or_become_json() -> None:
    logger = logging.Logger("celery-like")
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    logger.addHandler(handler)
    reformat(logger, Settings(log_format="text"))
    reformat(logger, Settings(log_format="text"))  # a second signal wraps nothing twice
    assert isinstance(handler.formatter, Redacted)
    assert not isinstance(handler.formatter.inner, Redacted)
    assert handler.formatter.format(token_record()).startswith(f"[WARNING] page /r/{TOKEN[:4]}… failed")
    reformat(logger, Settings(log_format="json"))
    assert isinstance(handler.formatter, JsonFormatter)
    assert isinstance(TextFormatter(), logging.Formatter)
