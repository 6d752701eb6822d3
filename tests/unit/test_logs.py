"""JSON log lines: one object per line, with the ids a call passes; and the format each mode chooses."""

from __future__ import annotations

import json
import logging
import sys

from invites.adapters.logs import JsonFormatter, formatter, log_format
from invites.settings import Settings


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
