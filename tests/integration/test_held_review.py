"""The organiser's review of held answers, through a real uvicorn on real databases: accepted, a held answer
counts like any answer and its confirmation is queued; rejected, it stays out; decided once only. Until then
it is in no count, export or reminder audience."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select, update

from invites import db
from invites.db.models import AnswerHistory, HeldAnswer, OutboundMessage
from invites.domain.rules import RuleSpec
from invites.domain.states import Answer, AnswerSource, HeldState, MessageStatus
from invites.readmodels.exports import export_bytes
from invites.services import campaigns
from invites.services.events import get_event
from invites.services.reminders import due_reminders, save_rule
from tests.conftest import SignedInOrganiser, as_person
from tests.integration.test_answer_batches import tokens
from tests.integration.test_rsvp import SLUG, setup_event, state

CHOICE = {"q_workshop": "zorg"}


def confirmations(runtime: Any) -> list[int]:
    with runtime.sessions() as session:
        query = select(OutboundMessage.invitation_id).where(OutboundMessage.kind == "rsvp-confirmation")
        return sorted(i for i in session.scalars(query) if i is not None)


def held_ids(runtime: Any) -> dict[int, int]:
    """The open held answers: invitation id → held answer id."""
    with runtime.sessions() as session:
        query = select(HeldAnswer.invitation_id, HeldAnswer.id).where(HeldAnswer.state == HeldState.HELD)
        return {invitation_id: held_id for invitation_id, held_id in session.execute(query)}


def test_the_organiser_accepts_or_rejects_a_held_answer(
    runtime: Any, settings: Any, web: str, organiser: SignedInOrganiser
) -> None:
    ids = setup_event(runtime, 3)
    links = tokens(runtime, settings)
    with httpx.Client(base_url=web, headers=organiser.headers) as client:
        # A scanner's presses: no stamp, so held.
        for token, value in zip(links[:2], ("accepted", "declined"), strict=True):
            response = client.post(f"/r/{token}", data={"answer": value, **CHOICE})
            assert response.status_code == 202
        listed = client.get(f"/api/v1/events/{SLUG}/held").json()
        assert listed["total"] == 2
        assert {item["answer"] for item in listed["items"]} == {"accepted", "declined"}
        assert all(item["reason"] and item["evidence"]["dwell"] is None for item in listed["items"])
        status = client.get(f"/api/v1/events/{SLUG}/status").json()
        assert (status["held"], status["accepted"], status["declined"], status["no_answer"]) == (2, 0, 0, 3)

        held = held_ids(runtime)
        accepted = client.post(f"/api/v1/events/{SLUG}/held/{held[ids[0]]}", json={"decision": "accept"})
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["queued"] == 1
        assert state(runtime, ids[0]).answer == Answer.ACCEPTED
        assert confirmations(runtime) == [ids[0]], "the accepted answer gets its confirmation"
        again = client.post(f"/api/v1/events/{SLUG}/held/{held[ids[0]]}", json={"decision": "reject"})
        assert again.status_code == 409, "a held answer is decided once"

        # The overview's button (the organiser's page, here with the API token instead of the cookie).
        rejected = client.post(f"/events/{SLUG}/held/{held[ids[1]]}", data={"decision": "reject"})
        assert rejected.status_code == 303 and rejected.headers["location"].endswith("#held")
        assert state(runtime, ids[1]).answer is None
        assert confirmations(runtime) == [ids[0]]
        status = client.get(f"/api/v1/events/{SLUG}/status").json()
        assert (status["held"], status["accepted"], status["declined"], status["no_answer"]) == (0, 1, 0, 2)
        assert client.get(f"/api/v1/events/{SLUG}/held").json() == {"total": 0, "items": []}
        unknown = client.post(f"/api/v1/events/{SLUG}/held/999999", json={"decision": "accept"})
        assert unknown.status_code == 404

    with runtime.sessions() as session:
        rows = {row.invitation_id: row for row in session.scalars(select(HeldAnswer))}
        entry = session.scalars(select(AnswerHistory).where(AnswerHistory.invitation_id == ids[0])).one()
    assert rows[ids[0]].state == HeldState.ACCEPTED and rows[ids[0]].decided_by == organiser.email
    assert rows[ids[1]].state == HeldState.REJECTED
    assert entry.source == AnswerSource.WEB and entry.detail["evidence"]["accepted_by"] == organiser.email


def test_held_answers_are_in_no_export_and_no_reminders_audience(
    runtime: Any, settings: Any, web: str
) -> None:
    ids = setup_event(runtime, 2)
    links = tokens(runtime, settings)
    # Both were sent the invitation (a reminder goes only to those who have the meeting).
    campaigns.start_campaign(
        runtime.sessions, SLUG, "invitation", settings, runtime.templates, datetime.now(UTC)
    )
    with db.transaction(runtime.sessions) as session:
        sent_at = datetime.now(UTC) - timedelta(hours=1)
        session.execute(update(OutboundMessage).values(status=MessageStatus.SENT, sent_at=sent_at))
    with httpx.Client(base_url=web) as client:
        assert client.post(f"/r/{links[0]}", data={"answer": "accepted", **CHOICE}).status_code == 202
        person = as_person(settings, links[1], {"answer": "accepted", **CHOICE})
        assert client.post(f"/r/{links[1]}", data=person).status_code == 303
    # Tomorrow at noon in Amsterdam: inside the reminders' sending hours whenever the test runs.
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    noon = datetime.combine(tomorrow, time(12), ZoneInfo("Europe/Amsterdam"))
    now = noon.astimezone(UTC)
    with db.transaction(runtime.sessions) as session:
        event = get_event(session, SLUG)
        event.starts_at, event.ends_at = now + timedelta(days=3), now + timedelta(days=3, hours=2)
        for name, audience in (("komt", "accepted"), ("stil", "no-answer")):
            save_rule(
                session, event, RuleSpec.parse(name, (now - timedelta(minutes=1)).isoformat(), audience), now
            )
    with runtime.sessions() as session:
        event = get_event(session, SLUG)
        due = {(item.rule, item.invitation_id) for item in due_reminders(session, now, settings, event.id)}
        exported = export_bytes(session, event, "csv").decode("utf-8-sig")
    assert {item for item in due if item[0] in ("komt", "stil")} == {("komt", ids[1]), ("stil", ids[0])}, (
        "the held accept still has no answer"
    )
    lines = [line for line in exported.splitlines() if "@example.org" in line]
    assert [("p1@" in line, "accepted" in line) for line in lines if "accepted" in line] == [(True, True)]
