"""The RSVP page's POST, answered in batches: the path that carries the rush after an invitation lands.

Plain ASGI in front of the app, for `POST /r/{token}` with a urlencoded form: it reads the form, hands the
answer to this process's batcher and, once the batch is committed, answers 303 to the page, as the app's own
route does. The batcher records, in one worker thread and one transaction, every answer that arrived while
the last batch was being written (`invites.services.answers.record_many`): under load the batches grow, when
quiet each answer goes alone at once. Nothing waits on a timer.

Whatever is not a plain success (a forged token, an answer against the rules, a press that was held as
not clearly a person's, a client over its rate limit, a failed batch) goes on to the app's route with its
body, which decides it again and renders the page; the
rate limit is not counted twice. So there is one place that renders answers, and this one that stores them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from invites.adapters.ratelimit import RateLimiter
from invites.domain.reference import LANGUAGES
from invites.runtime import Runtime
from invites.services.answers import Verdict, WebAnswer, from_form, record_many

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
# More than this in one transaction only makes the first ones wait longer for their answer.
MAX_BATCH = 256
# Confirmations are enqueued when this many are held, when this many seconds have passed, or when it is quiet.
SEND_AT = 500
SEND_EVERY = 0.2
# The scope key that tells the app's route what the batch made of the request it passes on.
VERDICT = "invites.answer_verdict"


@dataclass
class _Waiting:
    answer: WebAnswer
    client: str
    future: asyncio.Future[Verdict]
    counted: bool = False


@dataclass
class AnswerBatcher:
    """Gathers answers on this process's event loop and records them in batches, one batch at a time."""

    context: Callable[[], tuple[Runtime, RateLimiter]]
    limit: int = MAX_BATCH
    _waiting: list[_Waiting] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _unsent: list[int] = field(default_factory=list)
    _sent_at: float = 0.0

    async def submit(self, answer: WebAnswer, client: str) -> Verdict:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests start one per client): start afresh on it
            self._loop, self._waiting, self._task = loop, [], None
        waiting = _Waiting(answer, client, loop.create_future())
        self._waiting.append(waiting)
        if self._task is None:
            self._task = loop.create_task(self._drain())
        return await waiting.future

    async def _drain(self) -> None:
        try:
            while self._waiting or self._unsent:
                if not self._waiting:  # quiet again: hand over the confirmations held back
                    await run_in_threadpool(self._send_unsent)
                    continue
                batch, self._waiting = self._waiting[: self.limit], self._waiting[self.limit :]
                try:
                    verdicts = await run_in_threadpool(self._record, batch)
                except Exception:
                    log.exception("recording %d answers together failed; each goes on alone", len(batch))
                    verdicts = [Verdict.FAILED] * len(batch)
                for waiting, verdict in zip(batch, verdicts, strict=True):
                    if verdict == Verdict.AGAIN:
                        self._waiting.append(waiting)
                    elif not waiting.future.done():
                        waiting.future.set_result(verdict)
        finally:
            self._task = None

    def _record(self, batch: list[_Waiting]) -> list[Verdict]:
        """In a worker thread: the rate limits in one trip to Redis, then the answers in one transaction."""
        runtime, limiter = self.context()
        fresh = [waiting for waiting in batch if not waiting.counted]
        allowed = dict.fromkeys(map(id, batch), True)
        for waiting, ok in zip(
            fresh, limiter.allow_rsvp_many([(w.client, w.answer.token) for w in fresh]), strict=True
        ):
            waiting.counted = True
            allowed[id(waiting)] = ok
        chosen = [waiting for waiting in batch if allowed[id(waiting)]]
        recorded, queued = record_many(
            runtime.sessions, runtime.settings, [w.answer for w in chosen], datetime.now(UTC)
        )
        # Under a rush, one task for the confirmations of several batches (a Celery task costs about as much
        # as a batch's UPDATE); their rows are committed, so the sweep finds any a crash held back.
        self._unsent += queued
        if len(self._unsent) >= SEND_AT or time.monotonic() - self._sent_at >= SEND_EVERY:
            self._send_unsent()
        verdicts = dict(zip(map(id, chosen), recorded, strict=True))
        return [verdicts[id(w)] if allowed[id(w)] else Verdict.LIMITED for w in batch]

    def _send_unsent(self) -> None:
        """In a worker thread: enqueue the confirmations recorded so far."""
        unsent, self._unsent, self._sent_at = self._unsent, [], time.monotonic()
        if not unsent:
            return
        try:
            self.context()[0].enqueue(unsent)
        except Exception:
            # The answers and their outbox rows are committed: the sweep finds the rows and sends them.
            log.exception("enqueueing %d confirmations failed; the sweep will send them", len(unsent))


class AnswerFastPath:
    def __init__(self, app: ASGIApp, batcher: AnswerBatcher) -> None:
        self.app = app
        self.batcher = batcher

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _answer_token(scope)
        if token is None:
            await self.app(scope, receive, send)
            return
        body, complete = await _read_body(receive)
        fields = _form(body) if complete else None
        if fields is None:
            await self.app(scope, _replay(body, receive, complete), send)
            return
        headers = dict(scope.get("headers") or [])
        client = scope["client"][0] if scope.get("client") else "?"
        answer = from_form(token, fields, headers.get(b"user-agent", b"").decode("latin-1"), client)
        verdict = await self.batcher.submit(answer, client)
        if verdict != Verdict.SAVED:
            await self.app({**scope, VERDICT: verdict}, _replay(body, receive, complete), send)
            return
        lang = fields.get("lang", "")
        suffix = f"&lang={lang}" if lang in LANGUAGES else ""
        location = f"/r/{token}?saved=1{suffix}".encode()
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [(b"location", location), (b"content-length", b"0")],
            }
        )
        await send({"type": "http.response.body", "body": b""})


def _answer_token(scope: Scope) -> str | None:
    """The token of a urlencoded `POST /r/{token}`; None for every other request."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    token = path[3:]
    if not path.startswith("/r/") or not token or "/" in token:
        return None
    content_type = dict(scope.get("headers") or []).get(b"content-type", b"")
    if content_type.split(b";")[0].strip().lower() != b"application/x-www-form-urlencoded":
        return None
    return token


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The request's body, up to MAX_BODY; complete is False when it stopped short (too big, or gone)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > MAX_BODY:
            return b"".join(chunks), False


def _form(body: bytes) -> dict[str, str] | None:
    """The form's fields as Starlette parses them (the last of a repeated name wins); None if unreadable."""
    try:
        return dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True, strict_parsing=False))
    except ValueError:
        return None


def _replay(body: bytes, receive: Receive, complete: bool) -> Receive:
    """A receive that gives the body read so far again, then goes on with the client's own."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": not complete}

    return replay
