"""The FastAPI app. Routes parse input, call a service, and present the result; nothing more."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from invites.adapters.ratelimit import RateLimiter
from invites.runtime import Runtime
from invites.settings import get_settings, project_dir
from invites.web import (
    answer_batches,
    api,
    auth,
    dashboard_routes,
    event_routes,
    events_api,
    held_api,
    mail_routes,
    ops_routes,
    organiser_routes,
    registration_routes,
    reminder_routes,
    rsvp_routes,
    rsvps_api,
    send_routes,
    sends_api,
)
from invites.web.limits import BodyLimit
from invites.web.pages import install_error_pages
from invites.web.security import SecurityHeaders


def create_app(runtime: Runtime | None = None) -> FastAPI:
    """The app; with no runtime given, it builds this process's own from the settings on first request."""
    settings = runtime.settings if runtime else get_settings()
    app = FastAPI(
        title="invites",
        version="0.1.0",
        description="Invitations, RSVPs and their follow-up for an event. Every route under /api/v1 needs "
        "an API token (`invites user token EMAIL`), sent as `Authorization: Bearer ...`.",
        docs_url=None,
        redoc_url=None,
    )

    app.state.runtime = runtime
    app.state.development = settings.env == "development"
    # Swagger UI loads its script from a CDN: never in production, and in development only when asked for.
    app.state.api_docs = settings.api_docs and settings.env != "production"
    # Added before the session middleware, so inside it: a refused upload's page is in the organiser's
    # language. AnswerFastPath, outside, reads at most 64 KiB of an answer before handing it on.
    app.add_middleware(BodyLimit, settings=settings)
    auth.install(app, settings)
    install_error_pages(app)

    def answer_context() -> tuple[Runtime, RateLimiter]:
        rt = app.state.runtime or Runtime.current()
        return rt, rt.limiter

    # Added before SecurityHeaders, so inside it: its answers carry the same headers as every other.
    app.add_middleware(answer_batches.AnswerFastPath, batcher=answer_batches.AnswerBatcher(answer_context))
    app.add_middleware(SecurityHeaders, https=settings.base_url.startswith("https://"))
    app.mount("/static", StaticFiles(directory=str(project_dir("templates") / "web" / "static")), "static")
    app.include_router(event_routes.router)  # first: /events/new must match before any /events/{slug}
    app.include_router(organiser_routes.router)
    app.include_router(api.router)
    app.include_router(events_api.router)
    app.include_router(rsvps_api.router)
    app.include_router(held_api.router)
    app.include_router(registration_routes.router)
    app.include_router(mail_routes.router)
    app.include_router(mail_routes.preview_router)
    app.include_router(reminder_routes.router)
    app.include_router(send_routes.router)
    app.include_router(dashboard_routes.router)
    app.include_router(sends_api.router)
    app.include_router(ops_routes.router)
    app.include_router(rsvp_routes.router)
    return app
