"""The retry policy of delivery: how long a deferred message waits before each new try, and when it stops
being tried (its lifetime, or the event's start). Pure; invites.services.delivery applies it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

# Seconds to wait before each retry of a deferred message; the last delay repeats.
RETRY_DELAYS = (60, 300, 900, 1800, 3600)


def retry_delay(attempts: int, delays: Sequence[int] = RETRY_DELAYS) -> timedelta:
    return timedelta(seconds=delays[min(max(attempts, 1), len(delays)) - 1])


def parse_schedule(text: str) -> tuple[int, ...]:
    """'60,300,900' → (60, 300, 900): INVITES_RETRY_SCHEDULE, seconds before each retry."""
    try:
        delays = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        delays = ()
    if not delays or min(delays) <= 0:
        raise ValueError(f"INVITES_RETRY_SCHEDULE {text!r} must be positive seconds such as '60,300,900'")
    return delays


def give_up_at(event_starts_at: datetime, created_at: datetime, lifetime_seconds: int) -> datetime:
    """When a message stops being retried: `lifetime_seconds` after it was queued, or else when the
    event starts (an invitation that arrives after the meeting is no use)."""
    if lifetime_seconds > 0:
        return created_at + timedelta(seconds=lifetime_seconds)
    return event_starts_at


def after_deferral(
    attempts: int, now: datetime, deadline: datetime, delays: Sequence[int]
) -> datetime | None:
    """When to try a deferred message again, or None when that would be past its deadline."""
    due = now + retry_delay(attempts, delays)
    return due if due <= deadline else None
