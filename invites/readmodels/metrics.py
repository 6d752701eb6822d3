"""Prometheus metrics, computed from the database and Redis when scraped, so every web process reports the
same numbers whichever worker did the work: messages by status, answers, queue depth, and the latency from
queueing a message to its server's "250 OK"."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Float, case, cast, func, literal, select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from invites.adapters.embedded import broker_url
from invites.db.models import Invitation, OutboundMessage
from invites.domain.states import Answer, MessageStatus
from invites.readmodels.health import redis_client
from invites.settings import Settings

log = logging.getLogger(__name__)

# Seconds from queued to sent: a campaign of thousands under a relay's rate limit takes minutes to hours.
LATENCY_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)
# Celery's Redis transport keeps a queue's tasks of priority N in the list "<queue>\x06\x16N".
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def _latency(dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.extract("epoch", OutboundMessage.sent_at - OutboundMessage.created_at)
    return (func.julianday(OutboundMessage.sent_at) - func.julianday(OutboundMessage.created_at)) * 86400.0


def messages_by_status(session: Session) -> dict[str, int]:
    found = dict(
        session.execute(select(OutboundMessage.status, func.count()).group_by(OutboundMessage.status)).all()
    )
    return {status.value: found.get(status, 0) for status in MessageStatus}


def answers(session: Session) -> dict[str, int]:
    found = dict(
        session.execute(
            select(Invitation.answer, func.count())
            .where(Invitation.answer.is_not(None))
            .group_by(Invitation.answer)
        ).all()
    )
    return {answer.value: found.get(answer, 0) for answer in Answer}


def send_latency(session: Session) -> tuple[list[int], int, float]:
    """Cumulative counts per bucket, the count and the sum of seconds, over every sent message."""
    latency = cast(_latency(session.get_bind().dialect.name), Float)
    sent = OutboundMessage.status == MessageStatus.SENT
    row = session.execute(
        select(
            *(func.sum(case((latency <= bound, 1), else_=0)) for bound in LATENCY_BUCKETS),
            func.count(),
            func.coalesce(func.sum(latency), literal(0.0)),
        ).where(sent, OutboundMessage.sent_at.is_not(None))
    ).one()
    *buckets, count, total = row
    return [int(b or 0) for b in buckets], int(count), float(total)


def queue_depth(settings: Settings) -> int:
    """Tasks waiting in the Celery queue in Redis (not those a worker holds)."""
    client = redis_client(broker_url(settings))
    try:
        queue = settings.queue
        return sum(int(client.llen(queue + suffix)) for suffix in PRIORITY_SUFFIXES)
    finally:
        client.close()


class ServiceCollector(Collector):
    """Reads the numbers at scrape time."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        with self.sessions() as session:
            messages = GaugeMetricFamily(
                "invites_messages", "Outbox messages by delivery status.", labels=["status"]
            )
            for status, count in messages_by_status(session).items():
                messages.add_metric([status], count)
            yield messages
            rsvps = GaugeMetricFamily(
                "invites_rsvps", "Invitations by their current answer.", labels=["answer"]
            )
            for answer, count in answers(session).items():
                rsvps.add_metric([answer], count)
            yield rsvps
            buckets, count, total = send_latency(session)
        latency = HistogramMetricFamily(
            "invites_send_latency_seconds", "Seconds from a message's queueing to its server's acceptance."
        )
        latency.add_metric(
            [],
            [*((str(bound), n) for bound, n in zip(LATENCY_BUCKETS, buckets, strict=True)), ("+Inf", count)],
            sum_value=total,
        )
        yield latency
        try:
            depth = queue_depth(self.settings)
        except Exception:  # Redis is down: /readyz says so; the other numbers still come
            log.warning("queue depth unavailable: Redis unreachable", exc_info=True)
            return
        gauge = GaugeMetricFamily(
            "invites_queue_depth", "Tasks waiting in the Celery queue.", labels=["queue"]
        )
        gauge.add_metric([self.settings.queue], depth)
        yield gauge


def registry(sessions: sessionmaker[Session], settings: Settings) -> CollectorRegistry:
    """A registry of its own per app, so two apps (or two tests) never share numbers."""
    found = CollectorRegistry(auto_describe=False)
    found.register(ServiceCollector(sessions, settings))
    return found


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
