"""CSRF protection of the organiser pages: a random token kept in the signed session, sent back by every form
that changes something (the field `csrf_token`, or the header X-CSRF-Token)."""

from __future__ import annotations

import secrets

from fastapi import Request


class CsrfRejected(Exception):
    """A state-changing request with the session cookie but without its CSRF token."""


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


async def check_csrf(request: Request) -> None:
    expected = request.session.get("csrf")
    given = request.headers.get("x-csrf-token", "")
    form = None
    if not given and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get("csrf_token", "")
        given = value if isinstance(value, str) else ""
    if not isinstance(expected, str) or not given or not secrets.compare_digest(expected, given):
        if form is not None:
            await form.close()  # an upload's temporary files, which no handler will see
        raise CsrfRejected()
