"""Operations: /readyz (can this process reach its dependencies?) and /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from invites import health, metrics
from invites.web.deps import RuntimeDep

router = APIRouter()


@router.get("/readyz")
def readyz(rt: RuntimeDep) -> JSONResponse:
    """Every dependency's state; 503 when any of them fails, so a load balancer stops sending traffic."""
    state = health.readiness(rt)
    ready = all(check["ok"] for check in state.values())
    return JSONResponse(state, status_code=200 if ready else 503)


@router.get("/metrics")
def metrics_endpoint(request: Request, rt: RuntimeDep) -> Response:
    if getattr(request.app.state, "metrics", None) is None:
        request.app.state.metrics = metrics.registry(rt)
    return Response(metrics.exposition(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)
