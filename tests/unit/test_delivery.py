"""The retry schedule of deferred messages."""

from __future__ import annotations

from datetime import timedelta

import pytest

from invites.domain.retry import RETRY_DELAYS, retry_delay


def test_schedule_is_increasing() -> None:
    assert list(RETRY_DELAYS) == sorted(RETRY_DELAYS)
    assert len(set(RETRY_DELAYS)) == len(RETRY_DELAYS)


@pytest.mark.parametrize("attempts", range(1, len(RETRY_DELAYS) + 1))
def test_each_attempt_waits_its_delay(attempts: int) -> None:
    assert retry_delay(attempts) == timedelta(seconds=RETRY_DELAYS[attempts - 1])


def test_known_values() -> None:
    assert retry_delay(1) == timedelta(minutes=1)
    assert retry_delay(2) == timedelta(minutes=5)
    assert retry_delay(5) == timedelta(hours=1)


@pytest.mark.parametrize("attempts", [len(RETRY_DELAYS) + 1, len(RETRY_DELAYS) + 2, 100])
def test_last_delay_repeats(attempts: int) -> None:
    assert retry_delay(attempts) == timedelta(seconds=RETRY_DELAYS[-1])


def test_no_attempt_yet_waits_the_first_delay() -> None:
    assert retry_delay(0) == timedelta(seconds=RETRY_DELAYS[0])


def test_custom_schedule() -> None:
    assert retry_delay(1, (10, 20)) == timedelta(seconds=10)
    assert retry_delay(7, (10, 20)) == timedelta(seconds=20)


def test_the_schedule_is_read_from_the_setting() -> None:
    from invites.domain.retry import parse_schedule

    assert parse_schedule("60, 300,900") == (60, 300, 900)
    for bad in ("", "0", "60,-1", "soon"):
        with pytest.raises(ValueError, match="INVITES_RETRY_SCHEDULE"):
            parse_schedule(bad)


def test_a_message_gives_up_when_the_event_starts_unless_a_lifetime_is_set() -> None:
    from datetime import UTC, datetime

    from invites.domain.retry import after_deferral, give_up_at

    created = datetime(2018, 1, 15, 9, 0, tzinfo=UTC)
    starts = datetime(2018, 2, 13, 18, 30, tzinfo=UTC)
    assert give_up_at(starts, created, 0) == starts
    assert give_up_at(starts, created, 3600) == created + timedelta(hours=1)
    assert after_deferral(1, created, starts, (60,)) == created + timedelta(seconds=60)
    assert after_deferral(1, starts - timedelta(seconds=59), starts, (60,)) is None
