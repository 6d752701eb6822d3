"""A reminder run with real processes: a worker killed in the middle, another one finishing the work, and
the run repeated. Each (rule, invitation) ends with exactly one outbox row, sent."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from invites import db
from invites.db.models import Invitation, OutboundMessage
from invites.domain.eventfile import parse_event_file
from invites.domain.states import Answer, MessageStatus
from invites.services.events import load_event
from invites.services.imports import import_list
from tests.conftest import EVENT_FILE, NOW, run_cli, wait_until
from tests.e2e.test_faults import (  # noqa: F401  (fixtures)
    CONNECTIONS,
    ONE_DATABASE,
    WORKER_PROCESSES,
    Recorder,
    Scenario,
    scenario,
    smtp_server,
)

PEOPLE = 300
AT = "2018-02-12T10:00"  # the default "-1d 10:00" rule of the example event


def reminder_rows(runtime: Any) -> list[OutboundMessage]:
    with runtime.sessions() as session:
        return list(session.scalars(select(OutboundMessage).where(OutboundMessage.kind == "reminder")))


@pytest.mark.parametrize("database_url", ONE_DATABASE, indirect=True)
def test_a_worker_killed_during_a_reminder_run_is_finished_by_another_without_a_second_row(
    runtime: Any,
    scenario: Callable[..., Scenario],  # noqa: F811
    smtp_server: Callable[..., tuple[Controller, Recorder]],  # noqa: F811
) -> None:
    controller, recorder = smtp_server(Recorder(delay=0.05))
    run = scenario(controller.port)
    people = [f"gast.{i}@example.org" for i in range(PEOPLE)]
    with db.transaction(runtime.sessions) as session:
        event = load_event(session, parse_event_file(EVENT_FILE.read_bytes()), NOW).event
        import_list(session, event, ("e-mail\n" + "\n".join(people)).encode(), "people.csv", NOW)
        session.flush()
        for invitation in session.scalars(select(Invitation)):
            invitation.answer = Answer.ACCEPTED
    victim = run.worker()
    run.beat()
    ran = run_cli(run.settings, "reminders", "run", "--at", AT, "--json")
    assert json.loads(ran.stdout)["created"] == PEOPLE
    wait_until(lambda: recorder.count() >= 50, timeout=30, what="50 reminders before the kill")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(10)
    assert recorder.count() < PEOPLE, "killed in the middle of the run"
    # The scheduler fires again while the work is half done: nothing is added.
    again = run_cli(run.settings, "reminders", "run", "--at", "2018-02-12T10:01", "--json")
    assert json.loads(again.stdout)["created"] == 0

    run.worker()
    try:
        wait_until(
            lambda: Counter(r.status for r in reminder_rows(runtime))[MessageStatus.SENT] == PEOPLE,
            timeout=30,
            what="every reminder sent after the kill",
        )
    except AssertionError:
        raise AssertionError(f"{Counter(r.status for r in reminder_rows(runtime))}\n{run.logs()}") from None
    rows = reminder_rows(runtime)
    assert len({(r.reminder_rule_id, r.invitation_id) for r in rows}) == len(rows) == PEOPLE
    received = Counter(address for address, _ in recorder.received)
    assert set(received) == set(people)
    # Only a message whose 250 came back just before the kill, and whose outcome was not yet committed,
    # can go out twice: at most one per SMTP connection, and with the row's own Message-ID.
    assert sum(n - 1 for n in received.values()) <= WORKER_PROCESSES * CONNECTIONS
    by_address = {r.to_address: r.message_id for r in rows}
    assert all(message_id == by_address[address] for address, message_id in recorder.received)
