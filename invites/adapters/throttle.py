"""Rate limits shared by every worker: one per SMTP relay, and a cap per recipient domain.

Celery's own `rate_limit` counts per worker process, so it cannot keep a whole fleet under a relay's limit.
These limits live in Redis instead, as GCRA (a token bucket stored as one timestamp per key): a Lua script
reserves the next free slot atomically, on Redis's clock, and tells the caller how long to wait for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import redis.asyncio

# Starting points for well-known relays; INVITES_SMTP_RATE and INVITES_SMTP_CONNECTIONS override them.
PRESETS: dict[str, tuple[str, int]] = {
    # Microsoft 365 / Exchange Online: 30 messages a minute per mailbox, at most 3 connections.
    "m365": ("30/min", 3),
    # Google Workspace SMTP relay: ~10,000 recipients a day per user; spread evenly.
    "google": ("400/hour", 3),
    # Amazon SES, a production account's default sending rate.
    "ses": ("14/s", 8),
    # A local MTA or sink: no limit.
    "local": ("", 8),
}

_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_UNITS |= {"h": 3600.0, "hour": 3600.0, "d": 86400.0, "day": 86400.0}


@dataclass(frozen=True)
class Rate:
    """`count` messages per `per` seconds."""

    count: int
    per: float

    @property
    def interval(self) -> float:
        """Seconds between two messages at an even pace."""
        return self.per / self.count

    @classmethod
    def parse(cls, text: str, what: str = "rate") -> Rate | None:
        """'30/min', '10/s', '400/hour', '5000/day'; empty or '0' means no limit."""
        text = text.strip().lower()
        if text in ("", "0", "none", "unlimited"):
            return None
        match = re.fullmatch(r"(\d+)\s*/\s*(\d*)\s*([a-z]+?)s?", text)
        if match is None or match.group(3) not in _UNITS or int(match.group(1)) <= 0:
            raise ValueError(f"{what} {text!r} is not a rate such as '30/min', '10/s' or '400/hour'")
        return cls(int(match.group(1)), int(match.group(2) or 1) * _UNITS[match.group(3)])


@dataclass(frozen=True)
class Limits:
    relay: Rate | None
    domain: Rate | None
    connections: int

    @property
    def any(self) -> bool:
        return self.relay is not None or self.domain is not None


def resolve_limits(preset: str, relay_rate: str, domain_rate: str, connections: int) -> Limits:
    """The limits in force: an explicit rate wins over the preset's; a preset caps the connections."""
    if preset and preset not in PRESETS:
        raise ValueError(f"INVITES_SMTP_PRESET {preset!r} is unknown; choose one of {', '.join(PRESETS)}")
    preset_rate, preset_connections = PRESETS.get(preset, ("", connections))
    return Limits(
        relay=Rate.parse(relay_rate or preset_rate, "INVITES_SMTP_RATE"),
        domain=Rate.parse(domain_rate, "INVITES_DOMAIN_RATE"),
        connections=max(1, min(connections, preset_connections) if preset else connections),
    )


# KEYS: the bucket keys. ARGV: max wait (ms), then interval (ms) and burst (ms) for each key.
# Returns {1, wait_ms, slot_ms} with every slot reserved, or {0, wait_ms, slot_ms} with nothing reserved
# when the wait would exceed the maximum; slot_ms is when, on Redis's clock. The TAT ("theoretical arrival
# time") of each key is what is stored.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max_wait = tonumber(ARGV[1])
local wait = 0
local tats = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  tats[i] = tat
  local at = tat - burst
  if at - now > wait then wait = at - now end
end
if wait > max_wait then return {0, wait, now + wait} end
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local tat = math.max(tats[i], now + wait) + interval
  redis.call('SET', key, tat, 'PX', math.ceil(tat - now + 60000))
end
return {1, wait, now + wait}
"""


@dataclass(frozen=True)
class Slot:
    granted: bool
    wait: float  # seconds until the slot, or until one would be free when not granted
    at: float = 0.0  # when that is, in seconds since the epoch on Redis's clock


class Throttle:
    """Reserves sending slots in Redis. Built per process, on the event loop that uses it."""

    def __init__(
        self, client: redis.asyncio.Redis, limits: Limits, relay: str, prefix: str = "invites"
    ) -> None:
        self.client = client
        self.limits = limits
        self.relay = relay
        self.prefix = prefix
        self._script: Any = client.register_script(_GCRA)

    async def reserve(self, domain: str, max_wait: float) -> Slot:
        """Reserve the next slot for one message to `domain`, unless it is more than `max_wait` away."""
        keys: list[str] = []
        args: list[int] = [int(max_wait * 1000)]
        if self.limits.relay is not None:
            keys.append(f"{self.prefix}:throttle:relay:{self.relay}")
            args += _bucket(self.limits.relay)
        if self.limits.domain is not None:
            keys.append(f"{self.prefix}:throttle:domain:{domain.lower()}")
            args += _bucket(self.limits.domain)
        if not keys:
            return Slot(True, 0.0)
        granted, wait_ms, at_ms = await self._script(keys=keys, args=args)
        return Slot(bool(granted), int(wait_ms) / 1000, int(at_ms) / 1000)

    async def close(self) -> None:
        await self.client.aclose()


def _bucket(rate: Rate) -> list[int]:
    # No burst: the relay sees an even pace, which is what its limit measures.
    return [max(1, round(rate.interval * 1000)), 0]
