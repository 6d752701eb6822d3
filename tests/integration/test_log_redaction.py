"""No recipient's token in the logs: `invites serve` as an operator runs it, in text and in JSON, with the
access log of real requests to every page a token opens (/r/…, its .ics, /u/…, ?via=)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from invites import db
from invites.db.models import Invitation
from invites.domain.eventfile import parse_event_file
from invites.domain.tokens import make_token, unsubscribe_token
from invites.services.events import load_event
from invites.services.imports import import_list
from tests.conftest import EVENT_FILE, NOW, wait_until
from tests.integration.served import invites_serve

SLUG = "lokaal-samenspel-2018"


def an_invitation(runtime: Any) -> Invitation:
    with db.transaction(runtime.sessions) as session:
        event = load_event(session, parse_event_file(EVENT_FILE.read_bytes(), str(EVENT_FILE)), NOW).event
        import_list(session, event, b"e-mail,naam\nraadslid@example.nl,Raadslid\n", "lijst.csv", NOW)
    with runtime.sessions() as session:
        invitation = session.scalars(select(Invitation)).one()
        session.expunge(invitation)
        return invitation


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_access_log_keeps_the_path_and_drops_the_token(
    runtime: Any, settings: Any, tmp_path: Path, log_format: str
) -> None:
    invitation = an_invitation(runtime)
    rsvp = make_token(settings.secret_key, invitation.public_id, invitation.token_version)
    leave = unsubscribe_token(settings.secret_key, invitation.public_id)
    env = {"INVITES_LOG_FORMAT": log_format, "INVITES_LOG_LEVEL": "INFO"}
    with (
        invites_serve(settings, tmp_path / "serve.log", **env) as served,
        httpx.Client(base_url=served.url, timeout=30) as client,
    ):
        assert client.head(f"/r/{rsvp}").status_code == 200
        assert client.get(f"/r/{rsvp}?answer=accepted").status_code == 200
        assert client.get(f"/r/{rsvp}/invite.ics").status_code == 200
        assert client.get(f"/u/{leave}").status_code == 200
        client.get(f"/e/{SLUG}/register?via={rsvp}&lang=en")
        client.get("/r/not-a-token-but-still-cut")
        wait_until(lambda: "/r/not-…" in served.log_text(), timeout=30, what="the last access log line")
        log = served.log_text()

    assert rsvp not in log and leave not in log
    for secret_part in (rsvp.partition(".")[2], leave.partition(".")[2], invitation.public_id):
        assert secret_part not in log
    short = rsvp[:4] + "…"
    for shape in (
        f'"HEAD /r/{short} HTTP/1.1" 200',
        f'"GET /r/{short}?answer=accepted HTTP/1.1" 200',
        f'"GET /r/{short}/invite.ics HTTP/1.1" 200',
        f'"GET /u/{leave[:4]}… HTTP/1.1" 200',
        f"GET /e/{SLUG}/register?via={short}&lang=en HTTP/1.1",
    ):
        assert shape in log.replace('\\"', '"'), shape
    access = [line for line in log.splitlines() if "HTTP/1.1" in line]
    assert len(access) >= 6
    if log_format == "json":
        entries = [json.loads(line) for line in log.splitlines() if line.strip()]
        assert {entry["logger"] for entry in entries if "HTTP/1.1" in entry["message"]} == {"uvicorn.access"}
