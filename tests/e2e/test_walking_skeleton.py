"""The whole journey with real parts: event file, CSV import, a real Celery worker process over Redis, a real
SMTP sink, the RSVP page, and the status counts."""

from __future__ import annotations

import csv
import json
import re
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import httpx
from icalendar import Calendar

from invites.adapters.sink import stored_messages
from invites.services import campaigns
from tests.conftest import AUDIENCE_FILE, EVENT_FILE, NOW, as_person, run_cli, wait_until

SLUG = "lokaal-samenspel-2018"


def audience_addresses() -> set[str]:
    with AUDIENCE_FILE.open(encoding="utf-8") as handle:
        return {row["e-mailadres"].lower() for row in csv.DictReader(handle)}


def parse(path: Path) -> EmailMessage:
    message = message_from_bytes(path.read_bytes(), policy=default)
    assert isinstance(message, EmailMessage)
    return message


def test_invitations_travel_through_a_real_worker_and_rsvp_changes_the_counts(
    runtime: Any, settings: Any, sink: Any, start_worker: Any, web: str
) -> None:
    assert run_cli(settings, "event", "load", str(EVENT_FILE)).stdout.strip() == SLUG
    report = json.loads(run_cli(settings, "import", str(AUDIENCE_FILE), "--event", SLUG, "--json").stdout)
    expected = audience_addresses()
    assert report["accepted"] == len(expected) == 156
    assert report["rejected"] == []

    worker = start_worker()
    sent = run_cli(settings, "send", SLUG, "--wait", "--timeout", "120")
    assert "156 recipients, 156 queued for the workers" in sent.stdout
    assert "sent 156, failed 0, of 156" in sent.stdout
    assert worker.poll() is None, "the worker died"

    files = wait_until(
        lambda: len(stored_messages(sink.directory)) >= 156 and stored_messages(sink.directory)
    )
    messages = [parse(path) for path in files]
    assert len(messages) == 156
    recipients = [m["To"].addresses[0].addr_spec.lower() for m in messages]
    assert sorted(recipients) == sorted(expected), "every recipient exactly once"
    assert len({m["Message-ID"] for m in messages}) == 156

    for message in messages:
        assert message.get_content_type() == "multipart/mixed"
        alternative, attachment = message.get_payload()
        assert [p.get_content_type() for p in alternative.get_payload()] == [
            "text/plain",
            "text/html",
            "text/calendar",
        ]
        calendar_part = alternative.get_payload()[2]
        assert calendar_part.get_param("method") == "REQUEST"
        assert attachment.get_filename() == "invite.ics"
        calendar = Calendar.from_ical(calendar_part.get_content())
        assert calendar["METHOD"] == "REQUEST"
        vevent = next(c for c in calendar.walk("VEVENT"))
        assert vevent.decoded("DTSTART").isoformat() == "2018-02-13T19:30:00+01:00"
        attendee = str(vevent["ATTENDEE"]).removeprefix("mailto:").lower()
        assert attendee == message["To"].addresses[0].addr_spec.lower()
        assert settings.base_url + "/r/" in alternative.get_payload()[0].get_content()

    status = json.loads(run_cli(settings, "status", SLUG, "--json").stdout)
    assert status["invited"] == 156 and status["sent"] == 156 and status["failed"] == 0
    assert status["accepted"] == 0 and status["no_answer"] == 156

    text = messages[0].get_payload()[0].get_payload()[0].get_content()
    link = re.search(r"(https://invites\.example\.org/r/[\w\-.]+)\?answer=accepted", text)
    assert link is not None
    path = link.group(1).removeprefix(settings.base_url)
    token = path.removeprefix("/r/")
    with httpx.Client(base_url=web) as client:
        page = client.get(path + "?answer=accepted")
        assert page.status_code == 200
        assert "Ja, ik kom" in page.text and "Inspiratiebijeenkomst" in page.text
        assert client.head(path).status_code == 200
        unchanged = json.loads(run_cli(settings, "status", SLUG, "--json").stdout)
        assert unchanged["accepted"] == 0, "a GET or HEAD must never record an answer"

        answered = client.post(
            path, data=as_person(settings, token, {"answer": "accepted"}), follow_redirects=False
        )
        assert answered.status_code == 303
        after = json.loads(run_cli(settings, "status", SLUG, "--json").stdout)
        assert after["accepted"] == 1 and after["no_answer"] == 155
        assert "Uw antwoord:" in client.get(path).text

        client.post(path, data=as_person(settings, token, {"answer": "declined"}))
        changed = json.loads(run_cli(settings, "status", SLUG, "--json").stdout)
        assert changed["accepted"] == 0 and changed["declined"] == 1

    again = campaigns.start_campaign(runtime.sessions, SLUG, "invitation", settings, runtime.templates, NOW)
    assert again.new_rows == 0, "starting the same campaign again sends nobody a second invitation"


def test_the_sweep_task_finds_rows_whose_task_was_lost(
    runtime: Any, settings: Any, sink: Any, start_worker: Any
) -> None:
    from sqlalchemy import update

    from invites.db.models import OutboundMessage
    from workers.tasks import sweep_outbox

    run_cli(settings, "event", "load", str(EVENT_FILE))
    run_cli(settings, "import", str(AUDIENCE_FILE), "--event", SLUG)
    # The rows are committed but never enqueued, as when the process dies right after the commit.
    started = campaigns.start_campaign(runtime.sessions, SLUG, "invitation", settings, runtime.templates, NOW)
    with runtime.sessions() as session, session.begin():
        session.execute(update(OutboundMessage).values(updated_at=NOW))

    start_worker()
    sweep_outbox.delay()

    def delivered() -> bool:
        with runtime.sessions() as session:
            return campaigns.progress(session, started.scope)["sent"] == 156

    wait_until(delivered, timeout=120, what="the swept rows to be delivered")
    wait_until(
        lambda: len(stored_messages(sink.directory)) == 156, timeout=30, what="156 messages in the sink"
    )
