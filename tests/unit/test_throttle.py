"""Reading rates and presets."""

from __future__ import annotations

import pytest

from invites.adapters.throttle import Rate, resolve_limits


@pytest.mark.parametrize(
    ("text", "count", "per"),
    [
        ("30/min", 30, 60),
        ("10/s", 10, 1),
        ("400/hour", 400, 3600),
        ("5000/day", 5000, 86400),
        ("1/10s", 1, 10),
    ],
)
def test_rates(text: str, count: int, per: float) -> None:
    assert Rate.parse(text) == Rate(count, per)


@pytest.mark.parametrize("text", ["", "0", "unlimited"])
def test_no_limit(text: str) -> None:
    assert Rate.parse(text) is None


@pytest.mark.parametrize("text", ["30", "fast", "0/min", "30/fortnight"])
def test_bad_rates_are_named(text: str) -> None:
    with pytest.raises(ValueError, match="INVITES_SMTP_RATE"):
        Rate.parse(text, "INVITES_SMTP_RATE")


def test_the_m365_preset_is_30_a_minute_over_at_most_3_connections() -> None:
    limits = resolve_limits("m365", "", "", 8)
    assert limits.relay == Rate(30, 60) and limits.relay.interval == 2.0
    assert limits.connections == 3 and limits.domain is None


def test_an_explicit_rate_wins_over_the_preset() -> None:
    assert resolve_limits("m365", "10/min", "100/hour", 2) == resolve_limits("", "10/min", "100/hour", 2)


def test_no_preset_means_no_limit() -> None:
    limits = resolve_limits("", "", "", 4)
    assert not limits.any and limits.connections == 4


def test_an_unknown_preset_is_named() -> None:
    with pytest.raises(ValueError, match="'gmial' is unknown"):
        resolve_limits("gmial", "", "", 4)
