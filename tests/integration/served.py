"""`invites serve` as an operator runs it: its own process, its own uvicorn, its logging on stderr."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from invites.adapters.sink import free_port
from tests.conftest import ROOT, settings_env, wait_until


@dataclass(frozen=True)
class Served:
    url: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def invites_serve(settings: Any, log: Path, **env: str) -> Iterator[Served]:
    """`invites serve` on a free loopback port, with these settings and `env` on top; its stderr goes to
    `log`. Stopped (SIGTERM, then SIGKILL) at the end."""
    port = free_port()
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "invites.cli.main", "serve", "--port", str(port)],
            env={**settings_env(settings), **env},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: _answers(url) or process.poll() is not None, timeout=180, what="`invites serve` to answer"
        )
        assert process.poll() is None, log.read_text(errors="replace")
        yield Served(url, log)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
