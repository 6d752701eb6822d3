"""The events API over real HTTP: load an event file (create, then update), read it back, cancel it."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from invites import db
from invites.db.models import OutboundMessage
from invites.domain.states import MessageStatus
from invites.services.events import get_event
from invites.services.imports import import_list
from tests.conftest import AUDIENCE_FILE, EVENT_FILE, NOW

SLUG = "lokaal-samenspel-2018"
TOML = {"Content-Type": "application/toml"}


def load(client: httpx.Client, text: str) -> httpx.Response:
    return client.post("/api/v1/events", content=text.encode(), headers=TOML)


def test_an_event_file_is_loaded_listed_and_read_back(web: str, runtime: Any, organiser: Any) -> None:
    text = EVENT_FILE.read_text()
    with httpx.Client(base_url=web, headers=organiser.headers) as client:
        created = load(client, text)
        assert created.status_code == 201, created.text
        assert created.json() == {
            "slug": SLUG,
            "created": True,
            "sequence": 0,
            "calendar_changes": [],
            "url": f"/api/v1/events/{SLUG}",
        }
        assert created.headers["location"] == f"/api/v1/events/{SLUG}"
        with db.transaction(runtime.sessions) as session:
            event = get_event(session, SLUG)
            assert (
                import_list(session, event, AUDIENCE_FILE.read_bytes(), AUDIENCE_FILE.name, NOW).accepted
                == 156
            )

        listed = client.get("/api/v1/events")
        assert listed.status_code == 200
        [summary] = listed.json()
        assert summary["slug"] == SLUG
        assert summary["location"] == "Fort Vreeswijk, Nieuwegein"
        assert summary["starts_at"] == "2018-02-13T19:30:00+01:00"
        assert summary["status"] == "published"
        assert summary["counts"]["invited"] == 156 and summary["counts"]["no_answer"] == 156

        detail = client.get(f"/api/v1/events/{SLUG}").json()
        assert detail["title"] == "Inspiratiebijeenkomst Lokaal samenspel in verandering"
        assert detail["walk_in_at"] == "2018-02-13T19:00:00+01:00"
        assert detail["venue"]["name"] == "Fort Vreeswijk" and detail["venue"]["lat"] == 52.0072
        # Without opens/closes the sign-up is open until the meeting starts.
        assert detail["registration"] == {
            "enabled": True,
            "opens_at": None,
            "closes_at": "2018-02-13T19:30:00+01:00",
        }
        assert detail["capacity"] is None and detail["rsvp_deadline"] is None
        assert detail["series"]["slug"] == "lokaal-samenspel" and detail["series"]["position"] == 2
        assert text.count("[[programme]]") == len(detail["programme"]) > 1
        assert detail["programme"][1]["title"] == "Welkomstwoord"
        assert detail["programme"][1]["speaker"] == "Saskia van Grinsven"
        assert detail["counts"]["invited"] == 156


def test_an_update_that_moves_the_meeting_raises_the_sequence(web: str, organiser: Any) -> None:
    text = EVENT_FILE.read_text()
    with httpx.Client(base_url=web, headers=organiser.headers) as client:
        assert load(client, text).status_code == 201
        same = client.post("/api/v1/events", content=text.encode(), headers={"Content-Type": "text/plain"})
        assert same.status_code == 200
        assert same.json()["created"] is False and same.json()["calendar_changes"] == []
        assert same.json()["sequence"] == 0

        moved = load(client, text.replace('start = "19:30"', 'start = "20:00"', 1))
        assert moved.status_code == 200, moved.text
        assert moved.json()["calendar_changes"] == ["starts_at"]
        assert moved.json()["sequence"] == 1
        assert client.get(f"/api/v1/events/{SLUG}").json()["starts_at"] == "2018-02-13T20:00:00+01:00"


def test_a_wrong_event_file_is_refused_with_where_and_why(web: str, organiser: Any) -> None:
    text = EVENT_FILE.read_text()
    with httpx.Client(base_url=web, headers=organiser.headers) as client:
        broken = load(client, text.replace('title = "Inspiratie', 'title "Inspiratie', 1))
        assert broken.status_code == 400
        assert broken.json()["detail"].startswith("event file: not valid TOML:")
        assert "(at line 6, column 7)" in broken.json()["detail"]

        undated = load(client, text.replace("date = 2018-02-13\n", "", 1))
        assert undated.status_code == 400
        assert undated.json()["detail"] == "event file: field 'date': is required, as YYYY-MM-DD"

        as_json = client.post("/api/v1/events", json={"slug": SLUG})
        assert as_json.status_code == 415
        assert "application/toml" in as_json.json()["detail"]
        assert client.get("/api/v1/events").json() == [], "nothing was loaded"


def test_unknown_events_are_404_and_no_token_is_401(web: str, organiser: Any) -> None:
    with httpx.Client(base_url=web, headers=organiser.headers) as client:
        missing = client.get("/api/v1/events/no-such-event")
        assert missing.status_code == 404
        assert missing.json() == {"detail": "no event with slug 'no-such-event'"}
        assert client.post("/api/v1/events/no-such-event/cancel", json={"reason": "x"}).status_code == 404
    with httpx.Client(base_url=web) as anonymous:
        refused = anonymous.get("/api/v1/events")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert load(anonymous, EVENT_FILE.read_text()).status_code == 401
        assert anonymous.post(f"/api/v1/events/{SLUG}/cancel").status_code == 401


def test_cancelling_tells_whoever_has_the_meeting_and_stops_the_rest(
    web: str, runtime: Any, organiser: Any
) -> None:
    with db.transaction(runtime.sessions) as session:
        from invites.domain.eventfile import parse_event_file
        from invites.services.events import load_event

        event = load_event(session, parse_event_file(EVENT_FILE.read_bytes()), NOW).event
        import_list(session, event, AUDIENCE_FILE.read_bytes(), AUDIENCE_FILE.name, NOW)
    address = "stijn.berg@amersfoort.example.nl"
    with httpx.Client(base_url=web, headers=organiser.headers) as client:
        # The answer puts the meeting in their calendar and queues a confirmation no worker sends.
        answered = client.put(f"/api/v1/events/{SLUG}/rsvps/{address}", json={"answer": "accepted"})
        assert answered.status_code == 200, answered.text

        cancelled = client.post(
            f"/api/v1/events/{SLUG}/cancel", json={"reason": "De zaal is niet beschikbaar."}
        )
        assert cancelled.status_code == 200, cancelled.text
        body = cancelled.json()
        assert body["status"] == "cancelled" and body["sequence"] == 1
        assert body["cancellations"] == 1 and body["stopped"] == 1 and body["enqueued"] == 1

        detail = client.get(f"/api/v1/events/{SLUG}").json()
        assert detail["status"] == "cancelled" and detail["cancel_reason"] == "De zaal is niet beschikbaar."

        again = client.post(f"/api/v1/events/{SLUG}/cancel")
        assert again.status_code == 200 and again.json()["sequence"] == 1, "a second cancel raises nothing"
    with runtime.sessions() as session:
        rows = session.execute(
            select(OutboundMessage.kind, OutboundMessage.status, OutboundMessage.to_address).order_by(
                OutboundMessage.id
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        ("rsvp-confirmation", MessageStatus.CANCELLED, address),
        ("cancellation", MessageStatus.QUEUED, address),
    ]
