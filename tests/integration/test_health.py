"""/healthz and /readyz over real HTTP: each dependency's state, against a real database, a real Redis and
a real SMTP sink, and against ports where nothing listens."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from invites.adapters.sink import free_port
from invites.runtime import Runtime
from invites.settings import DEFAULT_SECRET_KEY
from invites.web.app import create_app
from tests.conftest import ROOT, wait_until


@contextmanager
def serving(runtime: Runtime) -> Iterator[str]:
    """The web app for this runtime under a real uvicorn on loopback; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=20, what="uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_ready_when_every_dependency_answers(web: str, settings: Any) -> None:
    assert httpx.get(f"{web}/healthz").json() == {"status": "ok"}
    response = httpx.get(f"{web}/readyz")
    assert response.status_code == 200
    state = response.json()
    assert state["database"] == {"ok": True}
    assert state["redis"] == {"ok": True}
    assert state["smtp"]["ok"] is True
    assert state["smtp"]["detail"] == settings.smtp_url.removeprefix("smtp://")


def test_readyz_names_the_dependency_that_fails(runtime: Any, settings: Any) -> None:
    # Ports nothing listens on: a Redis and an SMTP relay that are down.
    down = settings.model_copy(
        update={
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",
            "smtp_url": f"smtp://127.0.0.1:{free_port()}",
        }
    )
    broken = Runtime(down)
    try:
        with serving(broken) as base:
            assert httpx.get(f"{base}/healthz").status_code == 200  # alive, though not ready
            response = httpx.get(f"{base}/readyz")
    finally:
        broken.engine.dispose()
    assert response.status_code == 503
    state = response.json()
    assert state["database"] == {"ok": True}
    assert state["redis"]["ok"] is False
    assert "ConnectionError" in state["redis"]["error"]
    assert state["smtp"]["ok"] is False
    assert "refused" in state["smtp"]["error"].lower()


def test_readyz_reports_the_local_sink_when_no_relay_is_set(runtime: Any, settings: Any) -> None:
    local = Runtime(settings.model_copy(update={"smtp_url": ""}))
    try:
        with serving(local) as base:
            response = httpx.get(f"{base}/readyz")
    finally:
        local.engine.dispose()
    assert response.status_code == 200
    assert response.json()["smtp"] == {"ok": True, "detail": "local sink"}


def test_readyz_reports_a_database_that_is_down(runtime: Any, settings: Any) -> None:
    gone = Runtime(
        settings.model_copy(update={"database_url": f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"})
    )
    with serving(gone) as base:
        response = httpx.get(f"{base}/readyz")
    assert response.status_code == 503
    state = response.json()
    assert state["database"]["ok"] is False
    assert "OperationalError" in state["database"]["error"]
    assert state["redis"] == {"ok": True}


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
