"""Operations: /healthz (is this process up?), /readyz (can it reach its dependencies?), /metrics
(Prometheus), and the API's documentation (/docs)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from invites.readmodels import health, metrics
from invites.web.deps import RuntimeDep
from invites.web.security import docs_csp

router = APIRouter()


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


@router.get("/readyz")
def readyz(rt: RuntimeDep) -> JSONResponse:
    """Every dependency's state; 503 when any of them fails, so a load balancer stops sending traffic."""
    state = health.readiness(lambda: rt.engine, rt.settings)
    ready = all(check["ok"] for check in state.values())
    return JSONResponse(state, status_code=200 if ready else 503)


@router.get("/metrics")
def metrics_endpoint(request: Request, rt: RuntimeDep) -> Response:
    if getattr(request.app.state, "metrics", None) is None:
        request.app.state.metrics = metrics.registry(rt.sessions, rt.settings)
    return Response(metrics.exposition(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)
