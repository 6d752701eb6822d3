"""/metrics over real HTTP: the counters an operator graphs, computed from the database and Redis; and who
may scrape them (INVITES_METRICS_TOKEN, INVITES_HEALTH_NETWORKS, production's refusal)."""

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
from tests.integration.test_health import runtime_with, serving

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


TOKEN = "scrape-secret-0123456789abcdef"


def test_metrics_need_the_token_once_one_is_set(runtime: Any, settings: Any) -> None:
    with runtime_with(settings, metrics_token=TOKEN) as rt, serving(rt) as base:
        nothing = httpx.get(f"{base}/metrics")
        wrong = httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer scrape-secret-guessed"})
        right = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    for refused in (nothing, wrong):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert "INVITES_METRICS_TOKEN" in refused.text
        assert "invites_messages" not in refused.text
    assert right.status_code == 200
    assert "invites_messages" in right.text


def test_metrics_answer_only_the_monitoring_network(runtime: Any, settings: Any) -> None:
    with runtime_with(settings, health_networks="127.0.0.0/8") as rt, serving(rt) as base:
        inside = httpx.get(f"{base}/metrics")
    with runtime_with(settings, health_networks="10.0.0.0/8, fd00::/8") as rt, serving(rt) as base:
        outside = httpx.get(f"{base}/metrics")
        # From an untrusted peer (no INVITES_TRUSTED_PROXIES) a forged header changes nothing.
        forged = httpx.get(f"{base}/metrics", headers={"X-Forwarded-For": "10.1.2.3"})
    assert inside.status_code == 200 and "invites_messages" in inside.text
    for refused in (outside, forged):
        assert refused.status_code == 403
        assert "INVITES_HEALTH_NETWORKS" in refused.text


def test_metrics_through_a_trusted_proxy_count_the_client_it_names(runtime: Any, settings: Any) -> None:
    changes = {"health_networks": "10.0.0.0/8", "trusted_proxies": "127.0.0.1"}
    with runtime_with(settings, **changes) as rt, serving(rt) as base:
        monitoring = httpx.get(f"{base}/metrics", headers={"X-Forwarded-For": "10.1.2.3"})
        elsewhere = httpx.get(f"{base}/metrics", headers={"X-Forwarded-For": "192.0.2.7"})
    assert monitoring.status_code == 200
    assert elsewhere.status_code == 403


def test_production_closes_metrics_until_a_token_or_network_is_set(runtime: Any, settings: Any) -> None:
    with runtime_with(settings, env="production") as rt, serving(rt) as base:
        closed = httpx.get(f"{base}/metrics")
    with runtime_with(settings, env="production", metrics_token=TOKEN) as rt, serving(rt) as base:
        opened = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert closed.status_code == 403
    assert "INVITES_METRICS_TOKEN" in closed.text and "INVITES_HEALTH_NETWORKS" in closed.text
    assert "invites_messages" not in closed.text
    assert opened.status_code == 200 and "invites_messages" in opened.text
