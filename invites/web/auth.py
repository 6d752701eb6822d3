"""Who may use the organiser pages and the JSON API: sign-in with a session cookie, or a bearer token.

- The session is a signed cookie (Starlette's SessionMiddleware): HttpOnly, SameSite=Lax, and Secure when
  INVITES_BASE_URL is https. It carries a random session id whose row in the database says whether it still
  holds: signing out ends that row, a password change or a removed account ends them all.
- Every state-changing request made with the cookie carries the session's CSRF token, in the form field
  `csrf_token` or the header X-CSRF-Token. Bearer-token requests carry no cookie, so need none.
- Failed sign-ins are limited per (e-mail address, client address), per client and per account, in Redis
  like the RSVP limits (invites/adapters/ratelimit.py says how, and why so).

Organiser routers are made with `organiser_router()`, so no route can be added without the check; a test
walks every route of the app to prove it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.middleware.sessions import SessionMiddleware

from invites.domain.reference import LANGUAGES
from invites.runtime import Runtime
from invites.services import accounts
from invites.settings import Settings
from invites.web.csrf import CsrfRejected, check_csrf
from invites.web.deps import RuntimeDep
from invites.web.pages import render, translate

SESSION_COOKIE = "invites_session"
SESSION_SECONDS = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class SignedIn:
    id: int
    email: str
    name: str
    via_token: bool = False


class SignInRequired(Exception):
    """Raised by the organiser check; answered with a redirect to /login, or a 401 for the API."""


def install(app: FastAPI, settings: Settings) -> None:
    # The cookie's key is derived, so a leaked session key tells nothing about the token key.
    key = hmac.new(settings.secret_key.encode(), b"invites-session", hashlib.sha256).hexdigest()
    app.add_middleware(
        SessionMiddleware,
        secret_key=key,
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_SECONDS,
        same_site="lax",
        https_only=settings.base_url.startswith("https://"),
    )
    app.add_exception_handler(SignInRequired, _sign_in_required)
    app.add_exception_handler(CsrfRejected, _csrf_rejected)
    app.include_router(router)


def _from_token(rt: Runtime, secret: str) -> SignedIn | None:
    found = accounts.identity_for_token(rt.sessions, secret, datetime.now(UTC))
    return None if found is None else SignedIn(found.id, found.email, found.name, via_token=True)


def _from_session(rt: Runtime, sid: str) -> SignedIn | None:
    with rt.sessions() as session:
        user = accounts.user_for_session(session, sid)
        return None if user is None else SignedIn(user.id, user.email, user.name)


async def require_organiser(request: Request, rt: RuntimeDep) -> SignedIn:
    """The signed-in organiser; state-changing requests with the cookie must also carry the CSRF token."""
    authorization = request.headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        user = await run_in_threadpool(_from_token, rt, authorization[7:].strip())
        if user is None:
            raise SignInRequired()
    else:
        sid = request.session.get("sid")
        if not isinstance(sid, str):
            raise SignInRequired()
        user = await run_in_threadpool(_from_session, rt, sid)
        if user is None:
            request.session.clear()
            raise SignInRequired()
        if request.method not in SAFE_METHODS:
            await check_csrf(request)
    request.state.organiser = user
    return user


OrganiserDep = Annotated[SignedIn, Depends(require_organiser)]


def organiser_router(**kwargs: Any) -> APIRouter:
    """A router whose every route requires a signed-in organiser (or an API token)."""
    dependencies = [*kwargs.pop("dependencies", []), Depends(require_organiser)]
    return APIRouter(dependencies=dependencies, **kwargs)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")


async def _sign_in_required(request: Request, exc: Exception) -> Response:
    if _wants_json(request):
        return JSONResponse(
            {"detail": "sign in, or send an API token as 'Authorization: Bearer ...'"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


async def _csrf_rejected(request: Request, exc: Exception) -> Response:
    if _wants_json(request):
        return JSONResponse({"detail": "missing or wrong CSRF token (X-CSRF-Token)"}, status_code=403)
    lang = request.session.get("lang", "nl") if "session" in request.scope else "nl"
    message = translate("Dit formulier is verlopen. Laad de pagina opnieuw en probeer het nog eens.", lang)
    return render(request, "error.html", {"message": message}, status_code=403)


def safe_next(target: str) -> str:
    """Only a path on this site: never an open redirect to another one."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


router = APIRouter(include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", {"next": safe_next(next), "email": "", "error": ""})


@router.post("/login", response_class=HTMLResponse, response_model=None)
async def login(
    request: Request,
    rt: RuntimeDep,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    await check_csrf(request)
    lang = request.session.get("lang", "nl")
    client = request.client.host if request.client else "?"
    address = email.strip().lower()[:320]
    limiter = rt.limiter
    context = {"next": safe_next(next), "email": email}
    # Only failed attempts count: guessing stops the guesser's client, not the organiser at another one.
    if await run_in_threadpool(limiter.signin_refused, address, client):
        message = translate("Te veel pogingen. Wacht een paar minuten en probeer het opnieuw.", lang)
        return render(request, "login.html", {**context, "error": message}, status_code=429)
    sid = await run_in_threadpool(
        accounts.sign_in,
        rt.sessions,
        email,
        password,
        datetime.now(UTC),
        request.headers.get("user-agent", ""),
    )
    if sid is None:
        await run_in_threadpool(limiter.signin_failed, address, client)
        message = translate("Dit e-mailadres en wachtwoord horen niet bij elkaar.", lang)
        return render(request, "login.html", {**context, "error": message}, status_code=400)
    await run_in_threadpool(limiter.signin_succeeded, address, client)
    request.session.clear()  # a fresh session (and CSRF token) on every sign-in: no session fixation
    request.session.update({"sid": sid, "lang": lang})
    return RedirectResponse(safe_next(next), status_code=303)


@router.post("/logout", response_model=None)
async def logout(request: Request, rt: RuntimeDep) -> Response:
    await check_csrf(request)
    lang = request.session.get("lang", "nl")
    sid = request.session.get("sid")
    if isinstance(sid, str):
        await run_in_threadpool(accounts.sign_out, rt.sessions, sid, datetime.now(UTC))
    request.session.clear()
    request.session["lang"] = lang
    return RedirectResponse("/login", status_code=303)


@router.post("/language", response_model=None)
async def choose_language(
    request: Request, lang: Annotated[str, Form()] = "nl", next: Annotated[str, Form()] = "/"
) -> Response:
    await check_csrf(request)
    request.session["lang"] = lang if lang in LANGUAGES else "nl"
    return RedirectResponse(safe_next(next), status_code=303)
