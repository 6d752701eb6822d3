"""Server-rendered pages: one Jinja2 environment for templates/web, Dutch by default with English available.

Templates write their text in Dutch and wrap it in `_()`; the English is looked up in the catalogues
templates/web/i18n/*.toml, each a table of `"Dutch" = "English"` pairs. A text missing there shows in Dutch.
"""

from __future__ import annotations

import tomllib
from functools import cache
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context
from starlette.exceptions import HTTPException

from invites.domain.errors import NotFound
from invites.domain.reference import LANGUAGES
from invites.settings import project_dir
from invites.web.csrf import csrf_token


@cache
def catalogue() -> dict[str, str]:
    english: dict[str, str] = {}
    for path in sorted((project_dir("templates") / "web" / "i18n").glob("*.toml")):
        english.update(tomllib.loads(path.read_text(encoding="utf-8")))
    return english


def translate(text: str, lang: str, **values: Any) -> str:
    result = catalogue().get(text, text) if lang == "en" else text
    return result.format(**values) if values else result


@pass_context
def _jinja_translate(context: Context, text: str, **values: Any) -> str:
    return translate(text, str(context.get("lang") or "nl"), **values)


templates = Jinja2Templates(directory=str(project_dir("templates") / "web"))
templates.env.globals["_"] = _jinja_translate


def language(request: Request) -> str:
    """The organiser's chosen language (kept in the session), else Dutch."""
    if "session" in request.scope:
        chosen = request.session.get("lang")
        if chosen in LANGUAGES:
            return str(chosen)
    return "nl"


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    """A page with what every page needs: the language, the signed-in organiser and the CSRF token."""
    full: dict[str, Any] = {
        "lang": language(request),
        "organiser": getattr(request.state, "organiser", None),
        "csrf_token": csrf_token(request) if "session" in request.scope else "",
        "path": request.url.path,
        "development": getattr(request.app.state, "development", False),
    }
    full.update(context)
    return templates.TemplateResponse(request, name, full, status_code=status_code)


async def _error_page(request: Request, exc: Exception) -> Response:
    """A browser asking for a page gets an error page in its language; the API and scripts get JSON."""
    assert isinstance(exc, HTTPException)
    wants_page = "text/html" in request.headers.get("accept", "")
    if request.url.path.startswith("/api/") or not wants_page or exc.status_code < 400:
        return await http_exception_handler(request, exc)
    if exc.status_code == 404:
        return render(request, "not_found.html", {}, status_code=404)
    return render(request, "error.html", {"message": str(exc.detail)}, status_code=exc.status_code)


async def _not_found(request: Request, exc: Exception) -> Response:
    """What a route did not find (an event, say: invites.domain.errors.NotFound) is a 404, in one place: JSON
    under /api/, the page otherwise."""
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": str(exc)}, status_code=404)
    return render(request, "not_found.html", {}, status_code=404)


def install_error_pages(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _error_page)
    app.add_exception_handler(NotFound, _not_found)
