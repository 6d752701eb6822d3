"""The sends API over real HTTP: count a send, send to a segment through a real worker, follow the
campaign, and pause, resume or cancel it."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from invites import db
from invites.adapters.sink import stored_messages
from invites.db.models import Campaign, OutboundMessage, Recipient
from invites.domain.errors import InputError
from invites.domain.eventfile import parse_event_file
from invites.domain.segment import Segment
from invites.services import campaigns
from invites.services.events import get_event, load_event
from invites.services.imports import import_list
from invites.services.suppression import suppress
from tests.conftest import AUDIENCE_FILE, EVENT_FILE, NOW, run_cli, wait_until

SLUG = "lokaal-samenspel-2018"
SENDS = f"/api/v1/events/{SLUG}/sends"
MAYORS = 26


@pytest.fixture
def api(web: str, runtime: Any, organiser: Any) -> Iterator[httpx.Client]:
    """The example event with its 156 invitees, and a client with the organiser's API token."""
    with db.transaction(runtime.sessions) as session:
        event = load_event(session, parse_event_file(EVENT_FILE.read_bytes(), str(EVENT_FILE)), NOW).event
        assert (
            import_list(session, event, AUDIENCE_FILE.read_bytes(), AUDIENCE_FILE.name, NOW).accepted == 156
        )
    with httpx.Client(base_url=web, headers=organiser.headers, timeout=30) as client:
        yield client


def rows(runtime: Any) -> int:
    with runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(OutboundMessage)) or 0


def test_a_dry_run_counts_and_sends_nothing(api: httpx.Client, runtime: Any) -> None:
    everyone = api.post(SENDS, json={"dry_run": True})
    assert everyone.status_code == 200
    assert everyone.json() == {
        "event": SLUG,
        "kind": "invitation",
        "segment": {
            "roles": [],
            "municipalities": [],
            "tags": [],
            "languages": [],
            "attended_previous": False,
        },
        "dry_run": True,
        "selected": 156,
        "suppressed": 0,
        "recipients": 156,
        "already_sent": 0,
        "new": 156,
        "campaign": None,
        "queued": 0,
        "url": None,
    }
    mayors = api.post(SENDS, json={"dry_run": True, "roles": ["Burgemeester"], "kind": "reminder"}).json()
    assert (mayors["new"], mayors["kind"], mayors["segment"]["roles"]) == (MAYORS, "reminder", ["mayor"])
    utrecht = api.post(SENDS, json={"dry_run": True, "municipalities": ["gem. Utrecht"]}).json()
    assert utrecht["segment"]["municipalities"] == ["GM0344"] and 0 < utrecht["new"] < 156
    assert "location" not in everyone.headers
    assert rows(runtime) == 0
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Campaign)) == 0


def test_bad_input_is_a_client_error(api: httpx.Client, web: str) -> None:
    unknown_role = api.post(SENDS, json={"roles": ["keizer"], "dry_run": True})
    assert unknown_role.status_code == 400 and "unknown role 'keizer'" in unknown_role.json()["detail"]
    cancellation = api.post(SENDS, json={"kind": "cancellation", "dry_run": True})
    assert cancellation.status_code == 400 and "invites event cancel" in cancellation.json()["detail"]
    assert api.post(SENDS, json={"kind": "spam"}).status_code == 422
    assert api.post(SENDS, json={"roles": "mayor"}).status_code == 422
    assert api.post(SENDS, json={"tags": ["nul\x00byte"], "dry_run": True}).status_code == 422
    assert api.post(SENDS, json={"surprise": 1}).status_code == 422
    assert api.post("/api/v1/events/no-such-event/sends", json={}).status_code == 404
    assert api.post("/api/v1/events/Not A Slug/sends", json={}).status_code == 422
    assert api.get("/api/v1/campaigns/999999").status_code == 404
    assert api.get("/api/v1/campaigns/0").status_code == 422
    assert api.get(f"/api/v1/campaigns/{2**40}").status_code == 422
    for action in ("pause", "resume", "cancel"):
        assert api.post(f"/api/v1/campaigns/999999/{action}").status_code == 404
    with httpx.Client(base_url=web) as anonymous:
        refused = anonymous.post(SENDS, json={"dry_run": True})
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert anonymous.get("/api/v1/campaigns/1").status_code == 401
        assert anonymous.post("/api/v1/campaigns/1/pause").status_code == 401


def test_a_segment_send_reaches_only_the_segment_once(
    api: httpx.Client, runtime: Any, settings: Any, start_worker: Any
) -> None:
    start_worker()
    started = api.post(SENDS, json={"roles": ["mayor"]})
    assert started.status_code == 201
    body = started.json()
    assert started.headers["location"] == body["url"] == f"/api/v1/campaigns/{body['campaign']}"
    assert (body["recipients"], body["new"], body["queued"], body["dry_run"]) == (
        MAYORS,
        MAYORS,
        MAYORS,
        False,
    )

    done = wait_until(
        lambda: (p := api.get(body["url"]).json())["sent"] == MAYORS and p,
        timeout=90,
        what="the worker to send the campaign",
    )
    assert (done["total"], done["done"], done["failed"], done["queued"]) == (MAYORS, MAYORS, 0, 0)
    assert (done["event"], done["kind"], done["segment"]["roles"]) == (SLUG, "invitation", ["mayor"])
    assert done["seconds_left"] == 0 and done["rate"] >= 0

    files = stored_messages(settings.outbox_dir)
    addresses = {
        message_from_bytes(path.read_bytes(), policy=default)["To"].addresses[0].addr_spec.lower()
        for path in files
    }
    with runtime.sessions() as session:
        mayors = set(session.scalars(select(Recipient.email_key).where(Recipient.role_key == "mayor")))
    assert len(files) == MAYORS and addresses == mayors

    again = api.post(SENDS, json={"roles": ["burgemeester"]})
    assert again.status_code == 409 and "all 26 recipients have this message already" in again.text
    counted = api.post(SENDS, json={"roles": ["mayor"], "dry_run": True}).json()
    assert (counted["already_sent"], counted["new"]) == (MAYORS, 0)
    everyone = api.post(SENDS, json={})
    assert (everyone.status_code, everyone.json()["new"]) == (201, 156 - MAYORS), "the mayors are skipped"
    wait_until(lambda: len(stored_messages(settings.outbox_dir)) >= 156, timeout=90)
    assert rows(runtime) == 156


def test_a_campaign_is_paused_resumed_and_cancelled(api: httpx.Client, runtime: Any) -> None:
    # No worker runs: every message stays queued, so each step's effect is seen exactly.
    started = api.post(SENDS, json={"roles": ["wethouder"]}).json()
    url, total = started["url"], started["recipients"]
    assert total > 0
    progress = api.get(url).json()
    assert (progress["state"], progress["total"], progress["queued"], progress["sent"]) == (
        "running",
        total,
        total,
        0,
    )
    assert progress["seconds_left"] is None, "nothing was sent yet, so no rate to go by"

    paused = api.post(f"{url}/pause")
    assert paused.status_code == 200 and paused.json()["state"] == "paused"
    assert api.post(f"{url}/pause").status_code == 409
    resumed = api.post(f"{url}/resume")
    assert resumed.status_code == 200
    assert (resumed.json()["state"], resumed.json()["handed"]) == ("running", total)
    assert api.post(f"{url}/resume").status_code == 409

    cancelled = api.post(f"{url}/cancel")
    assert cancelled.status_code == 200
    after = cancelled.json()
    assert (after["state"], after["stopped"], after["cancelled"], after["queued"]) == (
        "cancelled",
        total,
        total,
        0,
    )
    assert after["done"] == total
    conflict = api.post(f"{url}/cancel")
    assert conflict.status_code == 409 and "cancelled already" in conflict.json()["detail"]
    assert api.post(f"{url}/resume").status_code == 409


def test_the_plan_counts_what_a_send_would_do_and_a_send_never_doubles(runtime: Any, settings: Any) -> None:
    """The services under the API and the pages: plan_campaign counts, start_campaign sends, to a segment."""
    with db.transaction(runtime.sessions) as session:
        event = load_event(session, parse_event_file(EVENT_FILE.read_bytes(), str(EVENT_FILE)), NOW).event
        import_list(session, event, AUDIENCE_FILE.read_bytes(), AUDIENCE_FILE.name, NOW)
        mayors = list(session.scalars(select(Recipient).where(Recipient.role_key == "mayor")))
        suppress(session, mayors[0].email, "unsubscribed", NOW)
        mayors[1].undeliverable = True
    segment = Segment.parse(roles=["burgemeester"])

    def plan(kind: str = "invitation", chosen: Segment | None = segment) -> campaigns.SendPlan:
        with runtime.sessions() as session:
            return campaigns.plan_campaign(session, get_event(session, SLUG), kind, chosen)

    first = plan()
    assert (first.selected, first.suppressed, first.recipients, first.already, first.new) == (
        26,
        2,
        24,
        0,
        24,
    )
    started = campaigns.start_campaign(
        runtime.sessions, SLUG, "invitation", settings, runtime.templates, NOW, segment
    )
    assert (started.total, started.new_rows) == (first.recipients, first.new)
    assert (plan().already, plan().new) == (24, 0)
    again = campaigns.start_campaign(
        runtime.sessions, SLUG, "invitation", settings, runtime.templates, NOW, segment
    )
    assert (again.total, again.new_rows) == (24, 0)
    everyone = plan(chosen=None)
    assert (everyone.selected, everyone.suppressed, everyone.already, everyone.new) == (156, 2, 24, 130)
    assert plan("update").selected == 0, "an update goes only to who has the meeting: nothing was sent yet"
    with pytest.raises(InputError, match="a campaign sends one of"):
        plan("rsvp-confirmation")
    with pytest.raises(InputError, match="a campaign sends one of"):
        campaigns.start_campaign(runtime.sessions, SLUG, "waitlist", settings, runtime.templates, NOW)
    assert rows(runtime) == 24

    result = run_cli(settings, "send", SLUG, "--municipality", "Utrecht", "--role", "wethouder")
    assert "recipients" in result.stdout
    with runtime.sessions() as session:
        latest = session.scalar(select(func.max(Campaign.id)))
        sent_to = session.execute(
            select(Recipient.role_key, Recipient.municipality_code)
            .join(OutboundMessage, OutboundMessage.recipient_id == Recipient.id)
            .where(OutboundMessage.campaign_id == latest)
        ).all()
    assert sent_to and set(sent_to) == {("alderman", "GM0344")}
    refused = run_cli(settings, "send", SLUG, "--role", "keizer", check=False)
    assert refused.returncode == 1 and "unknown role 'keizer'" in refused.stderr
