"""/healthz and /readyz over real HTTP: each dependency's state, against a real database, a real Redis and
a real SMTP sink, and against ports where nothing listens; who sees the details; and a relay that never
greets, which must neither slow the pages nor get a connection per probe."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from invites.adapters.sink import Sink, free_port
from invites.cli.serving import uvicorn_options
from invites.readmodels.health import TIMEOUT
from invites.runtime import Runtime
from invites.settings import DEFAULT_SECRET_KEY
from invites.web.app import create_app
from tests.conftest import ROOT, SignedInOrganiser, wait_until
from tests.integration.served import invites_serve

# Loopback is the monitoring network here: the caller that may see which dependency fails and why.
MONITORING = {"health_networks": "127.0.0.1/32"}


@contextmanager
def serving(runtime: Runtime) -> Iterator[str]:
    """The web app for this runtime under a real uvicorn on loopback, with the proxy options `invites serve`
    gives it (the test process keeps its own logging); yields its base URL."""
    port = free_port()
    options = {k: v for k, v in uvicorn_options(runtime.settings).items() if k != "log_config"}
    server = uvicorn.Server(
        uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="warning", **options)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=20, what="uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def runtime_with(settings: Any, **changes: Any) -> Iterator[Runtime]:
    made = Runtime(settings.model_copy(update=changes))
    try:
        yield made
    finally:
        if "engine" in made.__dict__:  # built (a database that is down never gets one)
            made.engine.dispose()


class SilentRelay:
    """A real TCP server on loopback that accepts SMTP connections and never says a word (no 220 greeting):
    a relay that hangs. It counts the connections it was given."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.first_at = 0.0  # time.monotonic() of the first connection
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:  # closed: the test is over
                return
            self.first_at = self.first_at or time.monotonic()
            self.accepted.append(connection)

    def __enter__(self) -> SilentRelay:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()
        for connection in self.accepted:
            connection.close()
        self.thread.join(5)


def test_ready_when_every_dependency_answers(runtime: Any, settings: Any) -> None:
    with runtime_with(settings, **MONITORING) as rt, serving(rt) as base:
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        response = httpx.get(f"{base}/readyz", timeout=30)
    assert response.status_code == 200
    state = response.json()
    assert state["ok"] is True
    assert state["database"] == {"ok": True}
    assert state["redis"] == {"ok": True}
    assert state["smtp"]["ok"] is True
    assert state["smtp"]["detail"] == settings.smtp_url.removeprefix("smtp://")
    assert state["checked_at"]


def test_readyz_names_the_dependency_that_fails(runtime: Any, settings: Any) -> None:
    # Ports nothing listens on: a Redis and an SMTP relay that are down.
    down = {"redis_url": f"redis://127.0.0.1:{free_port()}/0", "smtp_url": f"smtp://127.0.0.1:{free_port()}"}
    with runtime_with(settings, **down, **MONITORING) as broken, serving(broken) as base:
        assert httpx.get(f"{base}/healthz").status_code == 200  # alive, though not ready
        response = httpx.get(f"{base}/readyz", timeout=30)
    assert response.status_code == 503
    state = response.json()
    assert state["ok"] is False
    assert state["database"] == {"ok": True}
    assert state["redis"]["ok"] is False
    assert "ConnectionError" in state["redis"]["error"]
    assert state["smtp"]["ok"] is False
    assert "refused" in state["smtp"]["error"].lower()


def test_others_learn_only_whether_it_is_ready(
    runtime: Any, settings: Any, organiser: SignedInOrganiser
) -> None:
    """No host, no driver error for anonymous callers; an organiser's token or the metrics token sees them."""
    relay = f"127.0.0.1:{free_port()}"
    with (
        runtime_with(settings, smtp_url=f"smtp://{relay}", metrics_token="scrape-secret-0123456789") as rt,
        serving(rt) as base,
    ):
        anonymous = httpx.get(f"{base}/readyz", timeout=30)
        wrong = httpx.get(f"{base}/readyz", headers={"Authorization": "Bearer not-a-token"})
        as_organiser = httpx.get(f"{base}/readyz", headers=organiser.headers)
        as_scraper = httpx.get(f"{base}/readyz", headers={"Authorization": "Bearer scrape-secret-0123456789"})
    assert anonymous.status_code == wrong.status_code == 503
    assert anonymous.json() == wrong.json() == {"ok": False}
    assert relay not in anonymous.text and "refused" not in anonymous.text.lower()
    for detailed in (as_organiser, as_scraper):
        assert detailed.status_code == 503
        assert detailed.json()["smtp"]["ok"] is False
        assert "refused" in detailed.json()["smtp"]["error"].lower()
        assert detailed.json()["database"] == {"ok": True}


def test_readyz_reports_the_local_sink_when_no_relay_is_set(runtime: Any, settings: Any) -> None:
    with runtime_with(settings, smtp_url="", **MONITORING) as local, serving(local) as base:
        response = httpx.get(f"{base}/readyz", timeout=30)
    assert response.status_code == 200
    assert response.json()["smtp"] == {"ok": True, "detail": "local sink"}


def test_readyz_reports_a_database_that_is_down(runtime: Any, settings: Any) -> None:
    gone = {"database_url": f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"}
    with runtime_with(settings, **gone, **MONITORING) as rt, serving(rt) as base:
        response = httpx.get(f"{base}/readyz", timeout=30)
    assert response.status_code == 503
    state = response.json()
    assert state["database"]["ok"] is False
    assert "OperationalError" in state["database"]["error"]
    assert state["redis"] == {"ok": True}


def test_a_relay_that_never_greets_slows_no_page_and_gets_one_connection(
    runtime: Any, settings: Any, tmp_path: Path
) -> None:
    """120 probes at once against a relay that accepts and stays silent, on `invites serve`: the pages
    answer as fast as ever, and the relay sees one connection for every probe within the cache's lifetime."""
    probes = 120
    with (
        SilentRelay() as relay,
        invites_serve(
            settings,
            tmp_path / "serve.log",
            INVITES_SMTP_URL=f"smtp://127.0.0.1:{relay.port}",
            INVITES_HEALTH_CACHE_SECONDS="60",
        ) as served,
        ThreadPoolExecutor(max_workers=probes) as pool,
        # Clients made beforehand: making one loads the CA bundle, which would slow this process, not the app.
        httpx.Client(base_url=served.url, timeout=60, limits=httpx.Limits(max_connections=probes)) as prober,
        httpx.Client(base_url=served.url, timeout=30) as browser,
    ):
        browser.get("/login")  # warm: templates loaded, database open
        answers = [pool.submit(prober.get, "/readyz") for _ in range(probes)]
        wait_until(lambda: relay.accepted, timeout=30, what="the check to reach the relay")
        # The check now hangs on the silent relay (for TIMEOUT seconds), with the probes waiting on it.
        login_seconds = []
        for _ in range(3):
            before = time.monotonic()
            page = browser.get("/login")
            login_seconds.append(round(time.monotonic() - before, 3))
            assert page.status_code == 200
        measured_while_checking = time.monotonic() - relay.first_at < TIMEOUT
        results = [answer.result() for answer in answers]
        later = [browser.get("/readyz") for _ in range(20)]
    # Before: every probe opened its own session in the thread pool the pages share; /login took 2.5 s.
    print("/login while the check hangs, seconds:", login_seconds)
    assert max(login_seconds) < TIMEOUT / 3, login_seconds
    assert measured_while_checking, "the pages were measured after the check had already given up"
    assert {result.status_code for result in results + later} == {503}
    assert {result.text for result in results + later} == {'{"ok":false}'}
    assert len(relay.accepted) == 1


def test_the_last_result_is_served_until_a_newer_one_comes(
    runtime: Any, settings: Any, tmp_path: Path
) -> None:
    """Stale while the next check runs: a relay that went down shows once a check after the cache's lifetime
    has finished, never by making the probe wait for it."""
    relay, running = Sink(tmp_path / "relay").start(), True
    changes = {"smtp_url": relay.url, "health_cache_seconds": 1.0, **MONITORING}
    try:
        with runtime_with(settings, **changes) as rt, serving(rt) as base:
            first = httpx.get(f"{base}/readyz", timeout=30)
            relay.stop()
            running = False
            # The last check's result, whether or not this request starts the next one.
            stale = httpx.get(f"{base}/readyz", timeout=30)
            down = wait_until(
                lambda: (answer := httpx.get(f"{base}/readyz", timeout=30)).status_code == 503 and answer,
                timeout=60,
                what="/readyz to see the relay gone",
            )
    finally:
        if running:
            relay.stop()
    assert first.status_code == stale.status_code == 200
    assert stale.json()["checked_at"] == first.json()["checked_at"]
    assert "refused" in down.json()["smtp"]["error"].lower()


@pytest.mark.parametrize("command", [["serve"], ["worker"], ["beat"]])
def test_production_refuses_to_start_with_the_default_secret(tmp_path: Path, command: list[str]) -> None:
    env = {
        **os.environ,
        "INVITES_VAR_DIR": str(tmp_path / "var"),
        "INVITES_ENV": "production",
        "INVITES_BASE_URL": "https://invites.example.org",
        "INVITES_SECRET_KEY": DEFAULT_SECRET_KEY,
    }
    result = subprocess.run(
        [sys.executable, "-m", "invites.cli.main", *command],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "INVITES_ENV=production refuses to start: INVITES_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr
