"""Who may use the organiser pages and the JSON API: sign-in with a session cookie, or a bearer token.

- The session is a signed cookie (Starlette's SessionMiddleware): HttpOnly, SameSite=Lax, and Secure when
  INVITES_BASE_URL is https. It names the organiser and their session version, so a password change or a
  removed account ends every session at once.
- Every state-changing request made with the cookie carries the session's CSRF token, in the form field
  `csrf_token` or the header X-CSRF-Token. Bearer-token requests carry no cookie, so need none.
- Sign-in is rate-limited per client address and per e-mail address, in Redis like the RSVP limits.

Organiser routers are made with `organiser_router()`, so no route can be added without the check; a test
walks every route of the app to prove it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.middleware.sessions import SessionMiddleware

from invites import accounts
from invites.embedded import client_for
from invites.ratelimit import Limit, RateLimiter
from invites.runtime import Runtime, broker_url
from invites.settings import Settings
from invites.web.deps import RuntimeDep
from invites.web.pages import LANGUAGES, render, translate

SESSION_COOKIE = "invites_session"
SESSION_SECONDS = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SIGNIN_PER_CLIENT = Limit("signin-client", 20, 300)
SIGNIN_PER_ADDRESS = Limit("signin-address", 10, 900)


@dataclass(frozen=True)
class SignedIn:
    id: int
    email: str
    name: str
    via_token: bool = False


class SignInRequired(Exception):
    """Raised by the organiser check; answered with a redirect to /login, or a 401 for the API."""


class CsrfRejected(Exception):
    """A state-changing request with the session cookie but without its CSRF token."""


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


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


async def check_csrf(request: Request) -> None:
    expected = request.session.get("csrf")
    given = request.headers.get("x-csrf-token", "")
    if not given and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get("csrf_token", "")
        given = value if isinstance(value, str) else ""
    if not isinstance(expected, str) or not given or not secrets.compare_digest(expected, given):
        raise CsrfRejected()


def _from_token(rt: Runtime, secret: str) -> SignedIn | None:
    with rt.sessions() as session:
        user = accounts.user_for_token(session, secret, datetime.now(UTC))
        if user is None:
            return None
        signed_in = SignedIn(user.id, user.email, user.name, via_token=True)
        session.commit()
        return signed_in


def _from_session(rt: Runtime, user_id: int, version: int) -> SignedIn | None:
    from invites.models import Organiser

    with rt.sessions() as session:
        user = session.get(Organiser, user_id)
        if user is None or not user.active or user.session_version != version:
            return None
        return SignedIn(user.id, user.email, user.name)


async def require_organiser(request: Request, rt: RuntimeDep) -> SignedIn:
    """The signed-in organiser; state-changing requests with the cookie must also carry the CSRF token."""
    authorization = request.headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        user = await run_in_threadpool(_from_token, rt, authorization[7:].strip())
        if user is None:
            raise SignInRequired()
    else:
        user_id, version = request.session.get("organiser"), request.session.get("version")
        if not isinstance(user_id, int) or not isinstance(version, int):
            raise SignInRequired()
        user = await run_in_threadpool(_from_session, rt, user_id, version)
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


def _limiter(request: Request, rt: Runtime) -> RateLimiter:
    limiter = getattr(request.app.state, "signin_limiter", None)
    if limiter is None:
        limiter = request.app.state.signin_limiter = RateLimiter(client_for(broker_url(rt.settings)))
    assert isinstance(limiter, RateLimiter)
    return limiter


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", {"next": safe_next(next), "email": "", "error": ""})


def _sign_in(rt: Runtime, email: str, password: str) -> tuple[SignedIn, int] | None:
    """The organiser and their session version, when the address and password match."""
    with rt.sessions() as session:
        user = accounts.authenticate(session, email, password, datetime.now(UTC))
        if user is None:
            return None
        signed_in = SignedIn(user.id, user.email, user.name), user.session_version
        session.commit()
        return signed_in


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
    limiter = _limiter(request, rt)
    allowed = await run_in_threadpool(
        lambda: (
            limiter.allow(SIGNIN_PER_CLIENT, client)
            and limiter.allow(SIGNIN_PER_ADDRESS, email.strip().lower()[:320])
        )
    )
    context = {"next": safe_next(next), "email": email}
    if not allowed:
        message = translate("Te veel pogingen. Wacht een paar minuten en probeer het opnieuw.", lang)
        return render(request, "login.html", {**context, "error": message}, status_code=429)
    found = await run_in_threadpool(_sign_in, rt, email, password)
    if found is None:
        message = translate("Dit e-mailadres en wachtwoord horen niet bij elkaar.", lang)
        return render(request, "login.html", {**context, "error": message}, status_code=400)
    user, version = found
    request.session.clear()  # a fresh session (and CSRF token) on every sign-in: no session fixation
    request.session.update({"organiser": user.id, "version": version, "lang": lang})
    return RedirectResponse(safe_next(next), status_code=303)


@router.post("/logout", response_model=None)
async def logout(request: Request) -> Response:
    await check_csrf(request)
    lang = request.session.get("lang", "nl")
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
