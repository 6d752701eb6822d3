"""Operations: /healthz (is this process up?), /readyz (can it reach its dependencies?), /metrics
(Prometheus), and the API's documentation (/docs).

/readyz answers everybody with only `{"ok": …}` (and 200 or 503); which dependency fails, its host and its
error are for a signed-in organiser (or an API token), the INVITES_METRICS_TOKEN, or a client in
INVITES_HEALTH_NETWORKS. /metrics needs that token or that network; in development with neither set it is
open, in production it then answers 403 saying what to set."""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.exc import SQLAlchemyError

from invites.readmodels import health, metrics
from invites.runtime import Runtime
from invites.settings import Settings
from invites.web.auth import SignInRequired, require_organiser
from invites.web.deps import RuntimeDep
from invites.web.security import docs_csp

router = APIRouter()
NO_STORE = {"Cache-Control": "no-store"}


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/docs", include_in_schema=False)
def api_docs(request: Request) -> HTMLResponse:
    """Swagger UI, under a policy of its own: FastAPI's default page would be blocked by ours. Its script
    comes from a CDN, so it is there only when INVITES_API_DOCS=true and never in production."""
    if not request.app.state.api_docs:
        raise HTTPException(404, "the API documentation is off here (INVITES_API_DOCS); read /openapi.json")
    html = bytes(get_swagger_ui_html(openapi_url="/openapi.json", title="invites API").body).decode()
    return HTMLResponse(html, headers={"Content-Security-Policy": docs_csp(html)})


def _bearer(request: Request) -> str:
    authorization = request.headers.get("authorization", "")
    return authorization[7:].strip() if authorization[:7].lower() == "bearer " else ""


def _has_metrics_token(request: Request, settings: Settings) -> bool:
    token = settings.metrics_token
    return bool(token) and hmac.compare_digest(_bearer(request).encode(), token.encode())


def _in_health_networks(request: Request, settings: Settings) -> bool:
    """Whether the client (the peer, or what a trusted proxy says it forwards for) is in one of them."""
    try:
        address = ipaddress.ip_address(request.client.host if request.client else "")
    except ValueError:  # a Unix socket's peer, or none
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in settings.health_network_list)


async def _sees_details(request: Request, rt: Runtime) -> bool:
    if _in_health_networks(request, rt.settings) or _has_metrics_token(request, rt.settings):
        return True
    if not _bearer(request) and not isinstance(request.session.get("sid"), str):
        return False  # no credentials at all: no need to ask the database
    try:
        await require_organiser(request, rt)
    except SignInRequired:
        return False
    except SQLAlchemyError:  # the database is down: the report says so, to those who may see it
        return False
    return True


def _readiness(request: Request, rt: Runtime) -> health.Readiness:
    """This app's readiness, made on first use (nothing runs before a probe asks)."""
    found: health.Readiness | None = getattr(request.app.state, "readiness", None)
    if found is None:
        found = health.Readiness(
            lambda: health.readiness(lambda: rt.engine, rt.settings), rt.settings.health_cache_seconds
        )
        request.app.state.readiness = found
    return found


@router.get("/readyz")
async def readyz(request: Request, rt: RuntimeDep) -> JSONResponse:
    """200 when every dependency answered at the last check, else 503, so a load balancer stops sending
    traffic; the checks themselves run in the background (health.Readiness), never in this request."""
    report = await _readiness(request, rt).report()
    status = 200 if report.ok else 503
    if not await _sees_details(request, rt):
        return JSONResponse({"ok": report.ok}, status_code=status, headers=NO_STORE)
    checked_at = report.checked_at.isoformat(timespec="seconds") if report.checked_at else None
    body = {"ok": report.ok, "checked_at": checked_at, **report.checks}
    return JSONResponse(body, status_code=status, headers=NO_STORE)


def _metrics_refusal(request: Request, settings: Settings) -> Response | None:
    """Why this request may not scrape, as the answer to give; None when it may."""
    if _has_metrics_token(request, settings) or _in_health_networks(request, settings):
        return None
    if not settings.metrics_token and not settings.health_networks:
        if settings.env != "production":
            return None
        return PlainTextResponse(
            "/metrics is closed: in production it needs INVITES_METRICS_TOKEN (sent as "
            "'Authorization: Bearer ...') or INVITES_HEALTH_NETWORKS (the scraper's network); set one.\n",
            status_code=403,
        )
    if settings.metrics_token:
        return PlainTextResponse(
            "/metrics needs INVITES_METRICS_TOKEN, sent as 'Authorization: Bearer ...'.\n",
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return PlainTextResponse(
        "/metrics answers only clients in INVITES_HEALTH_NETWORKS; this one is not.\n", status_code=403
    )


@router.get("/metrics")
def metrics_endpoint(request: Request, rt: RuntimeDep) -> Response:
    refusal = _metrics_refusal(request, rt.settings)
    if refusal is not None:
        return refusal
    if getattr(request.app.state, "metrics", None) is None:
        request.app.state.metrics = metrics.registry(rt.sessions, rt.settings)
    return Response(metrics.exposition(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)
