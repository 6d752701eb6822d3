"""The RSVPs API over real HTTP: the answers a page at a time, and an answer an organiser records."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from invites import db
from invites.db.models import OutboundMessage
from invites.domain.eventfile import parse_event_file
from invites.domain.states import MessageStatus
from invites.services.events import load_event
from invites.services.imports import import_list
from tests.conftest import AUDIENCE_FILE, EVENT_FILE, NOW

SLUG = "lokaal-samenspel-2018"
ADDRESS = "stijn.berg@amersfoort.example.nl"
RSVPS = f"/api/v1/events/{SLUG}/rsvps"


@pytest.fixture
def audience(runtime: Any) -> None:
    """The example event with its example audience of 156."""
    with db.transaction(runtime.sessions) as session:
        event = load_event(session, parse_event_file(EVENT_FILE.read_bytes()), NOW).event
        assert (
            import_list(session, event, AUDIENCE_FILE.read_bytes(), AUDIENCE_FILE.name, NOW).accepted == 156
        )


def test_the_answers_come_a_page_at_a_time(web: str, organiser: Any, audience: None) -> None:
    with httpx.Client(base_url=web, headers=organiser.headers) as client:
        first = client.get(RSVPS).json()
        assert first["total"] == 156 and first["limit"] == 100 and len(first["items"]) == 100
        last = client.get(RSVPS, params={"limit": 100, "offset": 100}).json()
        assert len(last["items"]) == 56
        emails = [item["email"] for item in first["items"] + last["items"]]
        assert len(set(emails)) == 156, "the pages neither overlap nor leave anybody out"
        item = first["items"][0]
        assert item["answer"] is None and item["guests"] == 0 and item["waitlist_position"] is None
        assert item["answered_at"] is None and item["pending"] is False

        assert client.get(RSVPS, params={"limit": 0}).status_code == 422
        assert client.get(RSVPS, params={"answer": "maybe"}).status_code == 422
        assert client.get("/api/v1/events/nope/rsvps").status_code == 404


def test_an_organiser_records_an_answer_and_a_confirmation_is_queued(
    web: str, runtime: Any, organiser: Any, audience: None
) -> None:
    with httpx.Client(base_url=web, headers=organiser.headers) as client:
        # Any case of the address finds the person.
        recorded = client.put(f"{RSVPS}/Stijn.Berg@Amersfoort.example.nl", json={"answer": "accepted"})
        assert recorded.status_code == 200, recorded.text
        body = recorded.json()
        assert body["email"] == ADDRESS and body["name"] == "Stijn Berg"
        assert body["answer"] == "accepted" and body["changed"] is True and body["notices"] == 1
        assert body["answered_at"] is not None

        again = client.put(f"{RSVPS}/{ADDRESS}", json={"answer": "accepted"}).json()
        assert again["changed"] is False and again["notices"] == 0, "the same answer again mails nobody"

        accepted = client.get(RSVPS, params={"answer": "accepted"}).json()
        assert accepted["total"] == 1 and [i["email"] for i in accepted["items"]] == [ADDRESS]
        assert client.get(RSVPS, params={"answer": "none"}).json()["total"] == 155
        assert client.get(RSVPS, params={"answer": "declined"}).json()["total"] == 0

        history = client.get(f"{RSVPS}/{ADDRESS}/history")
        assert history.status_code == 200
        entries = history.json()["history"]
        assert [(e["answer"], e["source"]) for e in entries] == [("accepted", "organiser")] * 2
        assert entries[0]["detail"]["guests"] == 0
        assert entries[0]["detail"]["evidence"]["recorded_by"] == organiser.email, "how it came"
        assert history.json()["answer"] == "accepted"
    with runtime.sessions() as session:
        queued = session.execute(
            select(OutboundMessage.kind, OutboundMessage.to_address, OutboundMessage.status)
        ).all()
    assert [tuple(row) for row in queued] == [("rsvp-confirmation", ADDRESS, MessageStatus.QUEUED)]


def test_a_wrong_answer_is_400_and_an_unknown_person_404(
    web: str, runtime: Any, organiser: Any, audience: None
) -> None:
    with httpx.Client(base_url=web, headers=organiser.headers) as client:
        wrong = client.put(f"{RSVPS}/{ADDRESS}", json={"answer": "maybe"})
        assert wrong.status_code == 400
        assert wrong.json() == {"detail": "answer 'maybe' is not one of accepted, declined, tentative"}
        guests = client.put(f"{RSVPS}/{ADDRESS}", json={"answer": "accepted", "guests": 2})
        assert guests.status_code == 400
        assert guests.json() == {"detail": "the number of guests must be between 0 and 0"}

        unknown = client.put(f"{RSVPS}/nobody@example.org", json={"answer": "accepted"})
        assert unknown.status_code == 404
        assert unknown.json() == {"detail": f"nobody@example.org is not invited to {SLUG}"}
        assert client.get(f"{RSVPS}/nobody@example.org/history").status_code == 404
        assert (
            client.put(f"/api/v1/events/nope/rsvps/{ADDRESS}", json={"answer": "accepted"}).status_code == 404
        )
        assert client.get(f"{RSVPS}/{ADDRESS}/history").json()["history"] == [], "nothing was recorded"
    with httpx.Client(base_url=web) as anonymous:
        assert anonymous.put(f"{RSVPS}/{ADDRESS}", json={"answer": "accepted"}).status_code == 401
        assert anonymous.get(RSVPS).status_code == 401
    with runtime.sessions() as session:
        assert session.scalar(select(OutboundMessage.id)) is None
