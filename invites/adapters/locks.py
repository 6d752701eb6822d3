"""At most once per period across the fleet: a Redis key set with NX and an expiry (`SET NX PX`).

Periodic tasks take it, so that two beat processes (a second one started by mistake, or two during a
deploy) cannot make a task's body run twice in one period. The key is never deleted: it expires, and
with it the period.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import TypeVar

import redis

T = TypeVar("T")
# Shorter than the period, so the next regular firing never finds the key of the previous one.
PERIOD_SHARE = 0.8


def once_per(client: redis.Redis, name: str, period: float, body: Callable[[], T]) -> T | None:
    """Run `body` unless it already ran, here or elsewhere, in this period; None when it was skipped."""
    owner = f"{socket.gethostname()}:{os.getpid()}"
    ttl_ms = max(1, int(period * PERIOD_SHARE * 1000))
    if not client.set(f"invites:once:{name}", owner, nx=True, px=ttl_ms):
        return None
    return body()
