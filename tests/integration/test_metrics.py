"""/metrics over real HTTP: the counters an operator graphs, computed from the database and Redis."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from invites import db
from invites.db.models import Invitation, OutboundMessage
from invites.domain.eventfile import parse_event_file
from invites.domain.states import Answer, AnswerSource, MessageStatus
from invites.readmodels.health import redis_client
from invites.services import campaigns
from invites.services.events import load_event
from invites.services.imports import import_list
from invites.services.rsvp import record_answer
from tests.conftest import EVENT_FILE, NOW

SLUG = "lokaal-samenspel-2018"
AUDIENCE = "e-mail,naam\n" + "".join(f"persoon{i}@example.org,Persoon {i}\n" for i in range(5))


def scrape(web: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{web}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_expose_messages_answers_queue_depth_and_latency(
    web: str, runtime: Any, settings: Any
) -> None:
    with db.transaction(runtime.sessions) as session:
        event = load_event(session, parse_event_file(EVENT_FILE.read_bytes(), str(EVENT_FILE)), NOW).event
        import_list(session, event, AUDIENCE.encode(), "lijst.csv", NOW)
    campaigns.start_campaign(runtime.sessions, SLUG, "invitation", settings, runtime.templates, NOW)
    with db.transaction(runtime.sessions) as session:
        ids = session.scalars(select(OutboundMessage.id).order_by(OutboundMessage.id)).all()
        # Two sent, after 2 and 90 seconds; one failed; two still queued.
        for row_id, seconds in ((ids[0], 2), (ids[1], 90)):
            session.execute(
                update(OutboundMessage)
                .where(OutboundMessage.id == row_id)
                .values(status=MessageStatus.SENT, sent_at=NOW + timedelta(seconds=seconds))
            )
        session.execute(
            update(OutboundMessage).where(OutboundMessage.id == ids[2]).values(status=MessageStatus.FAILED)
        )
        invitations = session.scalars(select(Invitation).order_by(Invitation.id)).all()
        record_answer(session, invitations[0], Answer.ACCEPTED, AnswerSource.WEB, NOW)
        record_answer(session, invitations[1], Answer.ACCEPTED, AnswerSource.WEB, NOW)
        record_answer(session, invitations[2], Answer.DECLINED, AnswerSource.WEB, NOW)
    client = redis_client(settings.redis_url)
    try:
        client.delete(settings.queue)
        client.rpush(settings.queue, "task-1", "task-2", "task-3")
        metrics = scrape(web)
    finally:
        client.delete(settings.queue)
        client.close()

    assert metrics[("invites_messages", (("status", "sent"),))] == 2
    assert metrics[("invites_messages", (("status", "failed"),))] == 1
    assert metrics[("invites_messages", (("status", "queued"),))] == 2
    assert metrics[("invites_messages", (("status", "bounced"),))] == 0
    assert metrics[("invites_rsvps", (("answer", "accepted"),))] == 2
    assert metrics[("invites_rsvps", (("answer", "declined"),))] == 1
    assert metrics[("invites_rsvps", (("answer", "tentative"),))] == 0
    assert metrics[("invites_queue_depth", (("queue", settings.queue),))] == 3
    assert metrics[("invites_send_latency_seconds_count", ())] == 2
    # SQLite's julianday() keeps milliseconds, give or take.
    assert metrics[("invites_send_latency_seconds_sum", ())] == pytest.approx(92, abs=0.01)
    assert metrics[("invites_send_latency_seconds_bucket", (("le", "5.0"),))] == 1
    assert metrics[("invites_send_latency_seconds_bucket", (("le", "300.0"),))] == 2
    assert metrics[("invites_send_latency_seconds_bucket", (("le", "+Inf"),))] == 2
