"""A cap on every request's body, counted as the bytes arrive, as plain ASGI middleware.

The list uploads (the upload page and `POST /api/v1/events/{slug}/imports`) may send
INVITES_IMPORT_MAX_BYTES plus the form around the file; every other route INVITES_BODY_MAX_BYTES plus the
same. A declared Content-Length over the cap is refused before the app sees the request; a chunked body is
cut off at the chunk that passes it, so no form parser spools more than the cap to a temporary file. The
refusal is a 413 that names the limit (JSON under /api/, a page for a browser), and it closes the connection
rather than read the rest of an unwanted body.
"""

from __future__ import annotations

import json
import re

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from invites.settings import Settings
from invites.web.pages import language, render, translate

# The multipart boundaries, part headers and small fields (csrf_token, strict, sheet) around an upload.
FORM_OVERHEAD = 64 * 1024
UPLOAD_PATHS = re.compile(r"/api/v1/events/[^/]+/imports|/events/[^/]+/upload")
UPLOAD_REFUSED = (
    "Dit bestand is te groot: een lijst mag ten hoogste {limit} bytes zijn. "
    "Splits de lijst en upload de delen apart."
)
BODY_REFUSED = "Dit verzoek is te groot: ten hoogste {limit} bytes. Maak het kleiner en probeer het opnieuw."


class BodyTooLarge(Exception):
    """Raised from receive() when the body passes its cap; BodyLimit answers the request with 413."""


def is_upload(scope: Scope) -> bool:
    return scope.get("method") == "POST" and UPLOAD_PATHS.fullmatch(scope.get("path", "")) is not None


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value)
    return None


def _declared_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None  # the server refuses a malformed Content-Length before we are called


class _Guard:
    """One request's body, counted as it arrives; the app's answer, passed on unless the body ran over."""

    def __init__(self, receive: Receive, send: Send, limit: int, finished: bool) -> None:
        self._receive, self._send, self.limit = receive, send, limit
        self.received, self.finished, self.exceeded, self.started = 0, finished, False, False

    @property
    def replaced(self) -> bool:
        """The body passed the cap before the app answered: the 413 is the answer."""
        return self.exceeded and not self.started

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.finished = not message.get("more_body", False)
            if self.received > self.limit:
                self.exceeded = True
                raise BodyTooLarge(f"the request body passed {self.limit} bytes")
        return message

    async def send(self, message: Message) -> None:
        if self.replaced:
            return  # whatever the app made of a body cut short: the 413 replaces it
        if message["type"] == "http.response.start":
            self.started = True
            if not self.finished:
                # An answer before the body was read (a 401, say): close rather than read the rest.
                message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
        await self._send(message)


class BodyLimit:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        # Read on every request, not copied: the limits are the settings' own.
        self.settings = settings

    def limit(self, scope: Scope) -> int:
        """The most bytes this request's body may have."""
        if is_upload(scope):
            return self.settings.import_max_bytes + FORM_OVERHEAD
        return self.settings.body_max_bytes + FORM_OVERHEAD

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope)
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await self.refuse(scope, receive, send, limit)
            return
        has_body = bool(declared) or _header(scope, b"transfer-encoding") is not None
        guard = _Guard(receive, send, limit, finished=not has_body)
        try:
            await self.app(scope, guard.receive, guard.send)
        except Exception:
            if not guard.replaced:
                raise
        if guard.replaced:
            await self.refuse(scope, receive, send, limit)

    async def refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """413, saying what the limit is and what to do; a browser gets the error page in its language."""
        request = Request(scope, receive)
        shown = f"{limit - FORM_OVERHEAD:,}"
        if scope.get("path", "").startswith("/api/") or "text/html" not in request.headers.get("accept", ""):
            if is_upload(scope):
                detail = (
                    f"the upload is over the limit of {shown} bytes (INVITES_IMPORT_MAX_BYTES); "
                    "split the list and upload the parts"
                )
            else:
                detail = f"the request body is over the limit of {shown} bytes (INVITES_BODY_MAX_BYTES)"
            body = json.dumps({"detail": detail}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        message = translate(
            UPLOAD_REFUSED if is_upload(scope) else BODY_REFUSED, language(request), limit=shown
        )
        page = render(request, "error.html", {"message": message}, status_code=413)
        page.headers["connection"] = "close"
        await page(scope, receive, send)
