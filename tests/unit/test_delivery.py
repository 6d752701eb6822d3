"""The retry schedule of deferred messages."""

from __future__ import annotations

from datetime import timedelta

import pytest

from invites.delivery import RETRY_DELAYS, retry_delay


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
