"""RSVP answers recorded in batches (invites/services/answers.py, invites/web/answer_batches.py), on real
databases, a real Redis and a real uvicorn: each answer by the rules, once, and whatever the batch turns down
answered by the page itself."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from email import message_from_bytes
from typing import Any

import httpx
from sqlalchemy import func, select, update

from invites.adapters.embedded import client_for
from invites.adapters.ratelimit import RateLimiter
from invites.adapters.sink import stored_messages
from invites.db.models import AnswerHistory, Event, Invitation, OutboundMessage, Recipient, Suppression
from invites.domain.evidence import page_stamp
from invites.domain.states import Answer, AnswerSource
from invites.domain.tokens import make_token
from invites.services.answers import Verdict, WebAnswer, record_many
from invites.web.answer_batches import AnswerBatcher, _Waiting
from tests.conftest import NOW, PERSON_SEEN, as_person, wait_until
from tests.integration.test_rsvp import setup_event

WORKSHOP = {"workshop": "zorg"}


def tokens(runtime: Any, settings: Any) -> list[str]:
    with runtime.sessions() as session:
        return [
            make_token(settings.secret_key, invitation.public_id, invitation.token_version)
            for invitation in session.scalars(select(Invitation).order_by(Invitation.id))
        ]


def by_person(settings: Any, answers: list[WebAnswer]) -> list[WebAnswer]:
    """The answers as people's pages send them at NOW, after reading for five seconds: what `as_person`
    posts, on the batch's clock instead of the wall clock."""
    served = NOW - timedelta(seconds=5)
    return [
        replace(
            a, proof={"served": page_stamp(settings.secret_key, a.token, served), "evidence": PERSON_SEEN}
        )
        for a in answers
    ]


def without_capacity(runtime: Any) -> None:
    with runtime.sessions() as session, session.begin():
        session.execute(update(Event).values(capacity=None))


def test_a_batch_records_each_answer_by_the_rules(runtime: Any, settings: Any) -> None:
    ids = setup_event(runtime, 6)
    without_capacity(runtime)
    links = tokens(runtime, settings)
    with runtime.sessions() as session, session.begin():
        suppressed = session.get_one(Recipient, session.get_one(Invitation, ids[5]).recipient_id)
        session.add(Suppression(email_key=suppressed.email_key, reason="unsubscribed", at=NOW))
    forged = links[1].split(".")[0] + ".AAAAAAAAAAAAAAAAAAAAAA"
    batch = by_person(
        settings,
        [
            WebAnswer(links[0], "accepted", 1, WORKSHOP, "Firefox"),
            WebAnswer(forged, "accepted", 0, WORKSHOP),
            WebAnswer(links[1], "accepted", 0, {}),  # the required question unanswered
            WebAnswer(links[2], "declined"),
            WebAnswer(links[2], "accepted", 0, WORKSHOP),  # the same person again: the next batch
            WebAnswer(links[3], "maybe"),
            WebAnswer(links[4], "tentative", 0, WORKSHOP),
            WebAnswer(links[5], "declined"),
        ],
    )
    verdicts, queued = record_many(runtime.sessions, settings, batch, NOW)
    assert verdicts == [
        Verdict.SAVED,
        Verdict.NOT_FOUND,
        Verdict.REFUSED,
        Verdict.SAVED,
        Verdict.AGAIN,
        Verdict.REFUSED,
        Verdict.SAVED,
        Verdict.SAVED,
    ]
    with runtime.sessions() as session:
        answers = {i.id: (i.answer, i.guests, i.responses) for i in session.scalars(select(Invitation))}
        assert answers[ids[0]] == (Answer.ACCEPTED, 1, WORKSHOP)
        assert answers[ids[1]] == (None, 0, {}), "a refused answer changes nothing"
        assert answers[ids[2]][0] == Answer.DECLINED and answers[ids[3]][0] is None
        assert answers[ids[4]][0] == Answer.TENTATIVE and answers[ids[5]][0] == Answer.DECLINED
        history = session.scalars(select(AnswerHistory).order_by(AnswerHistory.id)).all()
        assert [(h.invitation_id, h.answer, h.source) for h in history] == [
            (ids[0], Answer.ACCEPTED, AnswerSource.WEB),
            (ids[2], Answer.DECLINED, AnswerSource.WEB),
            (ids[4], Answer.TENTATIVE, AnswerSource.WEB),
            (ids[5], Answer.DECLINED, AnswerSource.WEB),
        ]
        assert history[0].user_agent == "Firefox"
        detail = dict(history[0].detail)
        assert detail.pop("evidence")["seen"]["moves"] == 24, "how the answer came is kept with it"
        assert detail == {"guests": 1, "responses": WORKSHOP, "waitlist": None}
        mail = session.scalars(select(OutboundMessage).order_by(OutboundMessage.id)).all()
        assert sorted(m.id for m in mail) == sorted(queued)
        assert [(m.invitation_id, m.kind) for m in mail] == [
            (ids[0], "rsvp-confirmation"),
            (ids[2], "rsvp-confirmation"),
            (ids[4], "rsvp-confirmation"),
        ], "a confirmation for each, but none to a suppressed address"
        assert mail[0].idempotency_key.endswith(f":h{history[0].id}")
        assert len({m.message_id for m in mail}) == 3

    # The same answer again is kept in the history, and mails nobody; the one held back goes now.
    verdicts, queued = record_many(
        runtime.sessions, settings, [batch[0], batch[4]], NOW + timedelta(minutes=1)
    )
    assert verdicts == [Verdict.SAVED, Verdict.SAVED] and len(queued) == 1
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(AnswerHistory)) == 6
        assert session.get_one(Invitation, ids[2]).answer == Answer.ACCEPTED

    with runtime.sessions() as session, session.begin():
        session.execute(update(Event).values(rsvp_deadline=NOW))
    verdicts, queued = record_many(runtime.sessions, settings, [batch[3]], NOW + timedelta(minutes=2))
    assert verdicts == [Verdict.REFUSED] and queued == [], "after the deadline"


def test_answers_to_an_event_with_a_capacity_are_decided_one_by_one(runtime: Any, settings: Any) -> None:
    ids = setup_event(runtime, 3, capacity=2)
    links = tokens(runtime, settings)
    batch = by_person(
        settings,
        [
            WebAnswer(links[0], "accepted", 1, WORKSHOP),
            WebAnswer(links[1], "accepted", 0, WORKSHOP),
            WebAnswer(links[2], "accepted", 0, {}),
        ],
    )
    verdicts, queued = record_many(runtime.sessions, settings, batch, NOW)
    assert verdicts == [Verdict.SAVED, Verdict.SAVED, Verdict.REFUSED]
    with runtime.sessions() as session:
        assert session.get_one(Invitation, ids[0]).waitlist_position is None
        assert session.get_one(Invitation, ids[1]).waitlist_position == 1, "the event is full"
        kinds = session.scalars(select(OutboundMessage.kind).order_by(OutboundMessage.id)).all()
        assert kinds == ["rsvp-confirmation", "waitlist"] and len(queued) == 2
    declined = by_person(settings, [WebAnswer(links[0], "declined")])
    verdicts, _ = record_many(runtime.sessions, settings, declined, NOW)
    assert verdicts == [Verdict.SAVED]
    with runtime.sessions() as session:
        assert session.get_one(Invitation, ids[1]).waitlist_position is None, "moved up"


def test_the_rate_limits_of_a_batch_are_counted_in_one_trip(redis_url: str) -> None:
    with client_for(redis_url) as client:
        limiter = RateLimiter(client, per_client=3, namespace=f"t-{uuid.uuid4().hex[:8]}")
        assert limiter.allow_rsvp_many([("192.0.2.1", f"link{i}") for i in range(5)]) == [
            True,
            True,
            True,
            False,
            False,
        ]
        per_link = RateLimiter(client, per_client=1000, namespace=f"t-{uuid.uuid4().hex[:8]}")
        assert per_link.allow_rsvp_many([("192.0.2.2", "one")] * 31) == [True] * 30 + [False]
        assert not per_link.allow_rsvp("192.0.2.2", "one"), "the same counters as one request at a time"
        assert per_link.allow_rsvp("192.0.2.2", "two")


def test_answers_posted_at_once_are_each_recorded_once(runtime: Any, web: str, settings: Any) -> None:
    ids = setup_event(runtime, 60)
    without_capacity(runtime)
    links = tokens(runtime, settings)
    posts = [(link, "accepted") for link in links] + [(link, "declined") for link in links[:10]]

    def post(link_answer: tuple[str, str]) -> httpx.Response:
        link, value = link_answer
        form = {"answer": value, "q_workshop": "wonen", "lang": "en"}
        return client.post(f"/r/{link}", data=as_person(settings, link, form), follow_redirects=False)

    with httpx.Client(base_url=web, timeout=60) as client, ThreadPoolExecutor(32) as pool:
        responses = list(pool.map(post, posts))
    assert [r.status_code for r in responses] == [303] * 70
    assert all(
        r.headers["location"] == f"/r/{link}?saved=1&lang=en"
        for r, (link, _) in zip(responses, posts, strict=True)
    )
    assert all("default-src 'self'" in r.headers["content-security-policy"] for r in responses)
    assert all(r.headers["referrer-policy"] == "no-referrer" for r in responses)
    with runtime.sessions() as session:
        history = session.scalars(select(AnswerHistory.invitation_id)).all()
        assert sorted(history) == sorted(ids + ids[:10]), "every POST once in the history"
        assert session.scalar(select(func.count()).select_from(OutboundMessage)) == 70
        final = {i: a for i, a in session.execute(select(Invitation.id, Invitation.answer))}
        assert all(final[i] == Answer.ACCEPTED for i in ids[10:])


def test_what_a_batch_turns_down_the_page_answers(runtime: Any, web: str, settings: Any) -> None:
    setup_event(runtime, 2)
    without_capacity(runtime)
    links = tokens(runtime, settings)
    forged = links[0].split(".")[0] + ".AAAAAAAAAAAAAAAAAAAAAA"
    with httpx.Client(base_url=web) as client:
        missing = client.post(f"/r/{forged}", data={"answer": "accepted"})
        assert missing.status_code == 404 and "niet gevonden" in missing.text.lower()
        assert "content-security-policy" in missing.headers
        refused = client.post(f"/r/{links[0]}", data=as_person(settings, links[0], {"answer": "accepted"}))
        assert refused.status_code == 400 and "Welke tafel kiest u?" in refused.text
        # A form sent as multipart skips the batch: the app's route records it.
        fields = as_person(settings, links[1], {"answer": "accepted", "q_workshop": "zorg"})
        multipart = client.post(
            f"/r/{links[1]}", files={name: (None, value) for name, value in fields.items()}
        )
        assert multipart.status_code == 303
    with client_for(settings.redis_url) as redis:
        count = redis.get(f"invites:rate:{settings.queue}:rsvp-link:{links[0]}")
    assert count == b"1", "the page's second look at a turned-down answer is not counted again"
    with runtime.sessions() as session:
        assert session.scalars(select(AnswerHistory.invitation_id)).all() == [2]


def test_the_confirmations_of_a_batch_reach_the_inbox(
    runtime: Any, web: str, settings: Any, sink: Any, start_worker: Any
) -> None:
    setup_event(runtime, 12)
    without_capacity(runtime)
    links = tokens(runtime, settings)
    start_worker()
    with httpx.Client(base_url=web, timeout=60) as client, ThreadPoolExecutor(12) as pool:
        form = {"answer": "accepted", "q_workshop": "zorg"}
        codes = list(
            pool.map(
                lambda link: client.post(f"/r/{link}", data=as_person(settings, link, form)).status_code,
                links,
            )
        )
    assert codes == [303] * 12
    # Held back under a rush, the confirmations go to a worker as soon as it is quiet again.
    received = wait_until(
        lambda: len(stored_messages(sink.directory)) == 12 and stored_messages(sink.directory),
        timeout=60,
        what="twelve confirmations in the sink",
    )
    addresses = sorted(message_from_bytes(path.read_bytes())["To"] for path in received)
    assert addresses == sorted(f"p{i}@example.org" for i in range(12))
    with runtime.sessions() as session:
        statuses = session.scalars(select(OutboundMessage.status)).all()
        assert statuses == ["sent"] * 12


class Scripted(AnswerBatcher):
    """The batcher with its database step replaced by a script of verdicts, to watch it batch."""

    def __init__(self, script: list[list[Verdict] | Exception]) -> None:
        super().__init__(context=lambda: (None, None))  # type: ignore[arg-type, return-value]
        self.script = script
        self.batches: list[list[str]] = []

    def _record(self, batch: list[_Waiting]) -> list[Verdict]:
        self.batches.append([waiting.answer.token for waiting in batch])
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def test_the_batcher_gathers_what_arrives_and_holds_back_a_second_answer() -> None:
    async def run() -> list[Verdict]:
        batcher = Scripted(
            [[Verdict.SAVED], [Verdict.SAVED, Verdict.AGAIN, Verdict.NOT_FOUND], [Verdict.SAVED]]
        )
        first = asyncio.create_task(batcher.submit(WebAnswer("a.x", "accepted"), "c"))
        await asyncio.sleep(0)  # its batch starts with it alone; the next three arrive while it is written
        rest = [
            asyncio.create_task(batcher.submit(WebAnswer(t, "declined"), "c")) for t in ("b.x", "c.x", "d.x")
        ]
        verdicts = [await first, *await asyncio.gather(*rest)]
        assert batcher.batches == [["a.x"], ["b.x", "c.x", "d.x"], ["c.x"]]
        return verdicts

    assert asyncio.run(run()) == [Verdict.SAVED, Verdict.SAVED, Verdict.SAVED, Verdict.NOT_FOUND]


def test_a_failed_batch_leaves_each_answer_to_the_page() -> None:
    async def run() -> list[Verdict]:
        batcher = Scripted([RuntimeError("database went away"), [Verdict.SAVED]])
        failed = await asyncio.gather(*(batcher.submit(WebAnswer(t, "accepted"), "c") for t in "ab"))
        assert await batcher.submit(WebAnswer("c", "accepted"), "c") == Verdict.SAVED, "it goes on"
        return failed

    assert asyncio.run(run()) == [Verdict.FAILED, Verdict.FAILED]
