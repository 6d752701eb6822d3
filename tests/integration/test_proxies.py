"""X-Forwarded-For is believed only from INVITES_TRUSTED_PROXIES, on `invites serve` as an operator runs it:
a client that forges the header from an untrusted address is still counted as itself by the rate limits."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from invites.domain.tokens import make_token, new_public_id
from tests.conftest import wait_until
from tests.integration.served import invites_serve

LIMIT = 3


def answers_with_forged_addresses(base: str, secret: str) -> list[int]:
    """LIMIT + 2 RSVP pages of links nobody has, each claiming another client address."""
    statuses = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for n in range(LIMIT + 2):
            token = make_token(secret, new_public_id(), 1)
            response = client.get(f"/r/{token}", headers={"X-Forwarded-For": f"198.51.100.{n + 1}"})
            statuses.append(response.status_code)
    return statuses


@pytest.mark.parametrize("trusted", ["", "10.0.0.0/8"], ids=["no-proxy", "another-proxy"])
def test_a_forged_forwarded_for_from_an_untrusted_peer_changes_no_limit(
    runtime: Any, settings: Any, tmp_path: Path, trusted: str
) -> None:
    env = {
        "INVITES_RSVP_CLIENT_LIMIT": str(LIMIT),
        "INVITES_QUEUE": f"proxies-{uuid.uuid4().hex[:8]}",  # limits of its own in the shared Redis
        "INVITES_TRUSTED_PROXIES": trusted,
    }
    with invites_serve(settings, tmp_path / "serve.log", **env) as served:
        statuses = answers_with_forged_addresses(served.url, settings.secret_key)
    # One client, 127.0.0.1, whatever the header said: over its limit after LIMIT pages.
    assert statuses == [404] * LIMIT + [429, 429]


def test_a_trusted_proxy_names_the_client(runtime: Any, settings: Any, tmp_path: Path) -> None:
    env = {
        "INVITES_RSVP_CLIENT_LIMIT": str(LIMIT),
        "INVITES_QUEUE": f"proxies-{uuid.uuid4().hex[:8]}",
        "INVITES_TRUSTED_PROXIES": "127.0.0.1",
    }
    with invites_serve(settings, tmp_path / "serve.log", **env) as served:
        statuses = answers_with_forged_addresses(served.url, settings.secret_key)
        # The access log names the client the proxy forwarded for.
        wait_until(lambda: "198.51.100.5" in served.log_text(), timeout=30, what="the access log line")
    # Each forwarded-for address is a client of its own, none over its limit.
    assert statuses == [404] * (LIMIT + 2)
