"""What the browser tests share: Debian's Chromium under Playwright, and the app served with a real worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from invites.adapters.sink import free_port
from invites.web.app import create_app
from tests.conftest import serve

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]


@pytest.fixture
def site(runtime: Any, start_worker: Any) -> Iterator[str]:
    """The app on a port known in advance, so the links in the messages point at it; and a real worker."""
    port = free_port()
    runtime.settings.base_url = f"http://127.0.0.1:{port}"
    start_worker()
    with serve(create_app(runtime), port=port) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()
