"""RSVP tokens: a random public id plus an HMAC over it: nothing secret is stored, and a token can be revoked.

A token is `<public_id>.<mac>`. The public id is 96 random bits and the MAC 128 bits of HMAC-SHA256 keyed by
the service's secret and the invitation's token version: bumping the version revokes every older link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets


def new_public_id() -> str:
    return secrets.token_urlsafe(12)


def _mac(secret: str, public_id: str, version: int) -> str:
    digest = hmac.new(secret.encode(), f"rsvp:{public_id}:{version}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def make_token(secret: str, public_id: str, version: int) -> str:
    return f"{public_id}.{_mac(secret, public_id, version)}"


def split_token(token: str) -> str | None:
    """The public id a token claims, or None if it is not shaped like a token."""
    public_id, dot, mac = token.partition(".")
    if not dot or not public_id or not mac or len(token) > 100:
        return None
    return public_id


def token_matches(secret: str, token: str, public_id: str, version: int) -> bool:
    return hmac.compare_digest(token.encode(), make_token(secret, public_id, version).encode())


def unsubscribe_token(secret: str, public_id: str) -> str:
    """The token of an invitation's List-Unsubscribe links: its public id with an HMAC of its own purpose,
    so revoking RSVP links (a new token version) does not break the way out of the list."""
    digest = hmac.new(secret.encode(), f"unsubscribe:{public_id}".encode(), hashlib.sha256).digest()
    return f"{public_id}.{base64.urlsafe_b64encode(digest[:16]).rstrip(b'=').decode()}"
