"""How uvicorn serves the web app, for `invites serve` and `invites demo` alike: our log format (redacted),
and proxy headers believed only from INVITES_TRUSTED_PROXIES.

uvicorn's own default believes X-Forwarded-For from 127.0.0.1, so any local process, or a proxy on the same
machine that passes the header on unchecked, could name whatever client address it liked and each forged
address would get rate limits of its own. With no trusted proxy the peer is the client; with one, only a
request that comes from it may say who it forwards for."""

from __future__ import annotations

from typing import Any

from invites.adapters import logs
from invites.settings import Settings


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of `uvicorn.run` (or `uvicorn.Config`) that come from the settings."""
    proxies = settings.trusted_proxy_list
    return {
        "log_config": logs.uvicorn_config(settings),
        "proxy_headers": bool(proxies),
        # Ignored without proxy_headers; given anyway, so FORWARDED_ALLOW_IPS from the environment never is.
        "forwarded_allow_ips": proxies or ["127.0.0.1"],
    }
