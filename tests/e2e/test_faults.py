"""Faults with real processes: Celery workers and beat in their own processes, a real Redis, real SMTP
servers that misbehave on purpose. Each test ends with every recipient holding exactly one sent row (or a
failed one, where the server refused them for good), and the server having received each message.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from invites import db
from invites.adapters import embedded
from invites.adapters.sink import free_port
from invites.db.models import OutboundMessage
from invites.domain.eventfile import parse_event_file
from invites.domain.states import MessageStatus
from invites.services.events import load_event
from invites.services.imports import import_list
from tests.conftest import EVENT_FILE, PG_URL, ROOT, run_cli, settings_env, wait_until

SLUG = "lokaal-samenspel-2018"
ONE_DATABASE = [pytest.param("postgresql", marks=pytest.mark.postgres) if PG_URL else "sqlite"]
BOTH_DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
WORKER_PROCESSES = 2
CONNECTIONS = 4


@dataclass
class Recorder:
    """A real SMTP server's handler that records what it accepted, and misbehaves when told to."""

    delay: float = 0.0
    refuse_rcpt: Callable[[str], str | None] = lambda _address: None
    refuse_mail: Callable[[], str | None] = lambda: None
    received: list[tuple[str, str]] = field(default_factory=list)
    rcpt_seen: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        refusal = self.refuse_mail()
        if refusal:
            return refusal
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        with self.lock:
            self.rcpt_seen[address] += 1
        refusal = self.refuse_rcpt(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        data: bytes = envelope.original_content or b""
        header = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
        message_id = next(
            (
                line.split(":", 1)[1].strip()
                for line in header.splitlines()
                if line.lower().startswith("message-id:")
            ),
            "",
        )
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.received.append((rcpt.lower(), message_id))
        return "250 2.0.0 OK queued"

    def count(self) -> int:
        with self.lock:
            return len(self.received)


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., tuple[Controller, Recorder]]]:
    started: list[Controller] = []

    def start(recorder: Recorder, port: int = 0) -> tuple[Controller, Recorder]:
        controller = Controller(recorder, hostname="127.0.0.1", port=port or free_port(), decode_data=False)
        controller.start()
        started.append(controller)
        return controller, recorder

    yield start
    for controller in started:
        controller.stop()


@dataclass
class Scenario:
    settings: Any
    env: dict[str, str]
    tmp_path: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, *args: str, name: str) -> subprocess.Popen[bytes]:
        """A real process in a session of its own, so that it and its children can be killed together."""
        with (self.tmp_path / f"{name}-{len(self.processes)}.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "workers", *args],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def worker(self) -> subprocess.Popen[bytes]:
        return self.start(
            "worker",
            f"--concurrency={WORKER_PROCESSES}",
            "--loglevel=INFO",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            f"--hostname=faults-{uuid.uuid4().hex[:6]}@%h",
            name="worker",
        )

    def beat(self) -> subprocess.Popen[bytes]:
        return self.start(
            "beat", "--loglevel=INFO", f"--schedule={self.tmp_path / 'beat-schedule'}", name="beat"
        )

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def logs(self) -> str:
        return "\n".join(
            path.read_text(errors="replace")[-3000:] for path in sorted(self.tmp_path.glob("*.log"))
        )


@pytest.fixture
def scenario(runtime: Any, settings: Any, tmp_path: Path) -> Iterator[Callable[..., Scenario]]:
    made: list[Scenario] = []

    def make(smtp_port: int, redis_url: str | None = None) -> Scenario:
        configured = settings.model_copy(
            update={"smtp_url": f"smtp://127.0.0.1:{smtp_port}", "redis_url": redis_url or settings.redis_url}
        )
        env = {
            **settings_env(configured),
            # Fast enough for a test: a retry a second later, a short lease, a sweep every 2 seconds.
            "INVITES_RETRY_SCHEDULE": "1",
            "INVITES_MESSAGE_LIFETIME": "600",
            "INVITES_LEASE_SECONDS": "8",
            "INVITES_SMTP_TIMEOUT": "2",
            "INVITES_SWEEP_SECONDS": "2",
            "INVITES_BATCH_SIZE": "20",
            "INVITES_SMTP_CONNECTIONS": str(CONNECTIONS),
        }
        made.append(Scenario(configured, env, tmp_path))
        return made[-1]

    yield make
    for each in made:
        each.stop_all()


def audience(runtime: Any, count: int, refuse_every: int = 0) -> list[str]:
    """Load the example event and invite `count` people; every `refuse_every`th address starts with
    'refuse'."""
    people = [
        f"{'refuse' if refuse_every and i % refuse_every == 0 else 'person'}.{i}@example.org"
        for i in range(count)
    ]
    now = datetime.now(UTC)
    csv = "e-mail,naam,functie\n" + "".join(f"{a},Persoon {i},raadslid\n" for i, a in enumerate(people))
    with db.transaction(runtime.sessions) as session:
        event = load_event(session, parse_event_file(EVENT_FILE.read_bytes()), now).event
        import_list(session, event, csv.encode(), "people.csv", now)
    return people


def rows(runtime: Any) -> list[OutboundMessage]:
    with runtime.sessions() as session:
        return list(session.scalars(select(OutboundMessage).order_by(OutboundMessage.id)))


def statuses(runtime: Any) -> Counter[str]:
    return Counter(row.status.value for row in rows(runtime))


def assert_each_delivered_once(
    runtime: Any, recorder: Recorder, people: list[str], duplicates_at_most: int
) -> None:
    """Every recipient has exactly one row, it is sent, and the server received their message; any
    duplicate carries the row's own Message-ID."""
    found = rows(runtime)
    by_address = {row.to_address: row for row in found}
    assert len(found) == len(by_address) == len(people)
    assert {row.status for row in found} == {MessageStatus.SENT}
    received = Counter(address for address, _ in recorder.received)
    assert set(received) == {address.lower() for address in people}, "the server received every message"
    duplicates = sum(n - 1 for n in received.values())
    assert duplicates <= duplicates_at_most, f"{duplicates} duplicates"
    for address, message_id in recorder.received:
        assert message_id == by_address[address].message_id, "a copy carries its row's Message-ID"


@pytest.mark.parametrize("database_url", BOTH_DATABASES, indirect=True)
def test_a_worker_killed_mid_campaign_loses_nothing_and_doubles_at_most_what_was_in_flight(
    runtime: Any, scenario: Callable[..., Scenario], smtp_server: Callable[..., tuple[Controller, Recorder]]
) -> None:
    controller, recorder = smtp_server(Recorder(delay=0.03))
    run = scenario(controller.port)
    people = audience(runtime, 500)
    victim = run.worker()
    run.beat()
    run_cli(run.settings, "send", SLUG)
    wait_until(lambda: recorder.count() >= 100, timeout=40, what="100 messages before the kill")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(10)
    assert 100 <= recorder.count() < len(people), "killed in the middle of the campaign"

    run.worker()
    try:
        wait_until(
            lambda: statuses(runtime)["sent"] == len(people), timeout=50, what="every row sent after the kill"
        )
    except AssertionError:
        raise AssertionError(f"{statuses(runtime)}\n{run.logs()}") from None
    # In flight at the kill: one message per SMTP connection of each worker process.
    assert_each_delivered_once(runtime, recorder, people, duplicates_at_most=WORKER_PROCESSES * CONNECTIONS)


@pytest.mark.parametrize("database_url", ONE_DATABASE, indirect=True)
def test_redis_restarted_mid_campaign_still_delivers_everything(
    runtime: Any,
    scenario: Callable[..., Scenario],
    smtp_server: Callable[..., tuple[Controller, Recorder]],
    tmp_path: Path,
) -> None:
    private = tmp_path / "private-redis"
    url = embedded.ensure_running(private)
    try:
        controller, recorder = smtp_server(Recorder(delay=0.03))
        run = scenario(controller.port, redis_url=url)
        people = audience(runtime, 400)
        run.worker()
        run.beat()
        run_cli(run.settings, "send", SLUG)
        wait_until(lambda: recorder.count() >= 60, timeout=40, what="60 messages before the restart")
        assert embedded.stop(private), "Redis was running"
        # Redis keeps nothing on disk: every queued task is gone, and only the database knows the work.
        embedded.ensure_running(private)
        try:
            wait_until(
                lambda: statuses(runtime)["sent"] == len(people),
                timeout=50,
                what="every row sent after the restart",
            )
        except AssertionError:
            raise AssertionError(f"{statuses(runtime)}\n{run.logs()}") from None
        assert_each_delivered_once(runtime, recorder, people, duplicates_at_most=0)
    finally:
        embedded.stop(private)


@pytest.mark.parametrize("database_url", ONE_DATABASE, indirect=True)
def test_a_server_answering_421_and_451_for_a_while_gets_everything_after_retries(
    runtime: Any, scenario: Callable[..., Scenario], smtp_server: Callable[..., tuple[Controller, Recorder]]
) -> None:
    busy = {"mail": 60, "rcpt": 120}
    lock = threading.Lock()

    def refuse_mail() -> str | None:
        with lock:
            busy["mail"] -= 1
            return "421 4.7.0 Too many messages, slow down" if busy["mail"] >= 0 else None

    def refuse_rcpt(_address: str) -> str | None:
        with lock:
            busy["rcpt"] -= 1
            return "451 4.7.1 Greylisted, try again later" if busy["rcpt"] >= 0 else None

    controller, recorder = smtp_server(Recorder(refuse_mail=refuse_mail, refuse_rcpt=refuse_rcpt))
    run = scenario(controller.port)
    people = audience(runtime, 200)
    run.worker()
    run.beat()
    run_cli(run.settings, "send", SLUG)
    try:
        wait_until(lambda: statuses(runtime)["sent"] == len(people), timeout=50, what="every row sent")
    except AssertionError:
        raise AssertionError(f"{statuses(runtime)}\n{run.logs()}") from None
    assert_each_delivered_once(runtime, recorder, people, duplicates_at_most=0)
    retried = [row for row in rows(runtime) if row.attempts > 1]
    assert len(retried) >= 100, "the refused ones were deferred and tried again"


@pytest.mark.parametrize("database_url", ONE_DATABASE, indirect=True)
def test_a_permanent_refusal_fails_those_recipients_with_the_reason_and_delivers_the_rest(
    runtime: Any, scenario: Callable[..., Scenario], smtp_server: Callable[..., tuple[Controller, Recorder]]
) -> None:
    controller, recorder = smtp_server(
        Recorder(refuse_rcpt=lambda a: "550 5.1.1 No such user here" if a.startswith("refuse") else None)
    )
    run = scenario(controller.port)
    people = audience(runtime, 200, refuse_every=10)
    run.worker()
    run_cli(run.settings, "send", SLUG)
    wait_until(lambda: statuses(runtime)["sent"] + statuses(runtime)["failed"] == len(people), timeout=40)
    refused = {p for p in people if p.startswith("refuse")}
    for row in rows(runtime):
        if row.to_address in refused:
            assert row.status == MessageStatus.FAILED
            assert row.last_reply == "550 5.1.1 No such user here"
            assert row.attempts == 1, "a permanent refusal is not retried"
        else:
            assert row.status == MessageStatus.SENT
    assert sorted(address for address, _ in recorder.received) == sorted(set(people) - refused)


@pytest.mark.parametrize("database_url", ONE_DATABASE, indirect=True)
def test_a_server_that_is_down_and_comes_back_gets_the_deferred_messages(
    runtime: Any, scenario: Callable[..., Scenario], smtp_server: Callable[..., tuple[Controller, Recorder]]
) -> None:
    port = free_port()
    run = scenario(port)
    people = audience(runtime, 150)
    run.worker()
    run.beat()
    run_cli(run.settings, "send", SLUG)

    def all_deferred() -> bool:
        found = rows(runtime)
        return len(found) == len(people) and all(
            row.status == MessageStatus.DEFERRED and row.last_reply.startswith("connection:") for row in found
        )

    wait_until(all_deferred, timeout=30, what="every message deferred while the server is down")
    _, recorder = smtp_server(Recorder(), port=port)
    try:
        wait_until(lambda: statuses(runtime)["sent"] == len(people), timeout=40, what="every row sent")
    except AssertionError:
        raise AssertionError(f"{statuses(runtime)}\n{run.logs()}") from None
    assert_each_delivered_once(runtime, recorder, people, duplicates_at_most=0)
