"""The RSVP page on SQLite while another connection holds the write lock (a long import, say): the page is
served, and only the statistic of its open is lost. Real uvicorn, a real SQLite file, a real second
connection in BEGIN IMMEDIATE."""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import make_url

from invites import db
from invites.db.models import Invitation, PageView
from invites.domain.eventfile import parse_event_file
from invites.domain.tokens import make_token
from invites.services.events import load_event
from invites.services.imports import import_list
from tests.conftest import EVENT_FILE, NOW

# Short, so the test does not wait out the 30 s a real writer is given (invites/db/engine.py).
BUSY_MS = 300


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_page_is_served_while_an_import_holds_the_write_lock(
    runtime: Any, settings: Any, web: str, caplog: pytest.LogCaptureFixture
) -> None:
    with db.transaction(runtime.sessions) as session:
        loaded = load_event(session, parse_event_file(EVENT_FILE.read_bytes()), NOW).event
        assert import_list(session, loaded, b"email\nanne@example.org\n", "l.csv", NOW).accepted == 1
    with runtime.sessions() as session:
        invitation = session.scalars(select(Invitation)).one()
        token = make_token(settings.secret_key, invitation.public_id, invitation.token_version)

    @event.listens_for(runtime.engine, "connect")
    def _short_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA busy_timeout={BUSY_MS}")

    runtime.engine.dispose()  # every connection from here on waits BUSY_MS for a lock, not 30 s

    def opens() -> int:
        with runtime.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(PageView)) or 0)

    holder = sqlite3.connect(str(make_url(settings.database_url).database), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # what an import's transaction holds until it commits
        with caplog.at_level(logging.WARNING, logger="invites.web.rsvp_routes"):
            started = time.monotonic()
            page = httpx.get(f"{web}/r/{token}", timeout=30)
            took = time.monotonic() - started
        assert page.status_code == 200, page.text[:500]
        assert "Lokaal samenspel in verandering" in page.text and 'name="served"' in page.text
        assert took < 5, f"the page took {took:.1f}s"
        assert any("without logging the open" in record.getMessage() for record in caplog.records)
        holder.execute("ROLLBACK")
    finally:
        holder.close()

    assert opens() == 0, "the open that could not be written is not there"
    assert httpx.get(f"{web}/r/{token}", timeout=30).status_code == 200
    assert opens() == 1, "with the lock released, an open is logged again"
