"""The shared rate limits, against a real Redis: slots reserved by several clients (as several workers
would) keep one even pace, a slot too far away is not taken, and a throttled batch hands rows back."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio

from invites.adapters.mailer import SmtpMailer
from invites.adapters.sink import stored_messages
from invites.adapters.throttle import Limits, Rate, Throttle
from invites.domain.states import MessageStatus
from invites.services.delivery import deliver_batch
from invites.settings import SmtpTarget
from tests.conftest import NOW
from tests.integration.test_delivery import all_ids, prepare, rows_by_address


def client(url: str) -> redis.asyncio.Redis:
    if url.startswith("redis+socket://"):
        return redis.asyncio.Redis(unix_socket_path=url.removeprefix("redis+socket://"))
    return redis.asyncio.Redis.from_url(url)


@pytest.fixture
def prefix() -> Iterator[str]:
    yield f"test-{uuid.uuid4().hex[:8]}"


async def _reserve_all(
    url: str, limits: Limits, prefix: str, count: int, domain: str = "example.org"
) -> list[Any]:
    throttles = [Throttle(client(url), limits, "relay.example.org:25", prefix) for _ in range(2)]
    try:
        return list(
            await asyncio.gather(*(throttles[i % 2].reserve(domain, max_wait=60) for i in range(count)))
        )
    finally:
        for throttle in throttles:
            await throttle.close()


def test_slots_reserved_by_two_workers_keep_one_even_pace(redis_url: str, prefix: str) -> None:
    limits = Limits(relay=Rate(20, 1.0), domain=None, connections=4)
    slots = asyncio.run(_reserve_all(redis_url, limits, prefix, 40))
    assert all(slot.granted for slot in slots)
    waits = sorted(slot.wait for slot in slots)
    assert waits[0] == pytest.approx(0, abs=0.05)
    # 40 messages at 20 a second: the last one goes out about 1.95 s after the first.
    assert waits[-1] == pytest.approx(39 / 20, abs=0.1)
    # Each wait counts from when Redis ran that reservation, so the gaps between waits shrink when the calls
    # arrive spread out; the slots themselves, on Redis's clock, are never closer than the interval.
    slot_times = sorted(slot.at for slot in slots)
    gaps = [round(later - earlier, 3) for earlier, later in itertools.pairwise(slot_times)]
    assert min(gaps) >= 0.05, "no two slots closer than the interval"


def test_a_slot_too_far_away_is_not_taken(redis_url: str, prefix: str) -> None:
    async def run() -> list[Any]:
        throttle = Throttle(client(redis_url), Limits(Rate(30, 60.0), None, 1), "m365", prefix)
        try:
            return [await throttle.reserve("example.org", max_wait=1.0) for _ in range(3)]
        finally:
            await throttle.close()

    first, second, third = asyncio.run(run())
    assert first.granted and first.wait == pytest.approx(0, abs=0.05)
    assert not second.granted and second.wait == pytest.approx(2.0, abs=0.1)
    assert not third.granted and third.wait == pytest.approx(2.0, abs=0.1), "a refusal reserves nothing"


def test_the_domain_cap_counts_each_domain_apart(redis_url: str, prefix: str) -> None:
    async def run() -> list[Any]:
        throttle = Throttle(client(redis_url), Limits(None, Rate(1, 60.0), 4), "relay", prefix)
        try:
            return [
                await throttle.reserve(domain, max_wait=1.0)
                for domain in ("example.org", "EXAMPLE.org", "example.nl")
            ]
        finally:
            await throttle.close()

    org, org_again, nl = asyncio.run(run())
    assert org.granted and not org_again.granted and nl.granted


def test_a_throttled_batch_sends_what_the_rate_allows_and_hands_the_rest_back(
    runtime: Any, sink: Any, redis_url: str, prefix: str
) -> None:
    prepare(runtime, ["anne@example.org", "bram@example.nl", "carla@example.com"])
    settings = runtime.settings.model_copy(update={"throttle_max_wait": 0.5})
    throttle = Throttle(client(redis_url), Limits(Rate(1, 60.0), None, 1), "sink", prefix)
    result = deliver_batch(
        runtime.sessions,
        all_ids(runtime),
        SmtpMailer(SmtpTarget.parse(sink.url)),
        settings,
        runtime.templates,
        lambda: NOW,
        throttle=throttle,
    )
    assert (result.claimed, result.sent, result.released) == (3, 1, 2)
    assert len(stored_messages(sink.directory)) == 1
    waiting = [row for row in rows_by_address(runtime).values() if row.status != MessageStatus.SENT]
    assert len(waiting) == 2
    for row in waiting:
        assert row.status == MessageStatus.DEFERRED and row.attempts == 0, "a throttled row was not tried"
        assert NOW + timedelta(seconds=50) <= row.next_attempt_at <= NOW + timedelta(seconds=61)
    assert set(result.again) == {row.id for row in waiting}, "due within two minutes: re-enqueued by the task"
    assert 50 <= result.again_in <= 61
