"""Use case: record many answers from RSVP pages at once, as they arrive together under load.

One answer on its own costs a transaction of several statements, a commit and a task. When hundreds of
people answer at the same moment (the invitation has just landed), the web processes gather the answers that
arrive while the last batch is being written and record them here together: one SELECT finds them all, one
UPDATE and one INSERT keep the invitations and their history, one more INSERT queues the confirmations, and
one commit and one task follow. The rules are rsvp.py's own (`check_answer`, `apply_answer`, `notice_kind`).

An answer to an event with a capacity is decided one at a time under the event's lock, by
`rsvp.record_answer`, since its place depends on every answer before it.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, joinedload, sessionmaker

from invites import rsvp
from invites.errors import InputError, NotFound
from invites.models import AnswerHistory, AnswerSource, Event, Invitation
from invites.outbox import Notice, queue_many
from invites.settings import Settings
from invites.tokens import split_token, token_matches

log = logging.getLogger(__name__)


class Verdict(enum.StrEnum):
    SAVED = "saved"  # recorded (or unchanged), its confirmation queued
    NOT_FOUND = "not-found"  # a forged, wrong or revoked token
    REFUSED = "refused"  # against the rules (deadline, questions, places): nothing changed
    AGAIN = "again"  # the same invitation answered earlier in this batch: it goes in the next one
    ONE_BY_ONE = "one-by-one"  # an event with a capacity: decided on its own, under the event's lock
    FAILED = "failed"  # the database failed it: nothing of it was kept
    LIMITED = "limited"  # over the rate limit: not even looked at


@dataclass(frozen=True)
class WebAnswer:
    """One POST of the RSVP page, as the form sent it."""

    token: str
    answer: str
    guests: int = 0
    responses: dict[str, str] = field(default_factory=dict)
    user_agent: str = ""


def from_form(token: str, fields: dict[str, str], user_agent: str) -> WebAnswer:
    """The answer a page's form carries: a guest count that is not a number fails the rules, not the parse."""
    try:
        guests = int(fields.get("guests") or 0)
    except ValueError:
        guests = -1
    responses = {key.removeprefix("q_"): value for key, value in fields.items() if key.startswith("q_")}
    return WebAnswer(token, fields.get("answer", ""), guests, responses, user_agent)


def record_one(
    session: Session, settings: Settings, invitation: Invitation, answer: WebAnswer, now: datetime
) -> list[int]:
    """Record one answer from the page; returns the outbox rows to enqueue after the caller commits.

    Raises InputError when it breaks a rule, after which the caller rolls back.
    """
    outcome = rsvp.record_answer(
        session,
        invitation,
        rsvp.parse_answer(answer.answer),
        AnswerSource.WEB,
        now,
        answer.user_agent,
        guests=answer.guests,
        responses=answer.responses,
    )
    return rsvp.queue_notices(session, invitation, outcome, settings, now)


def record_many(
    factory: sessionmaker[Session], settings: Settings, answers: Sequence[WebAnswer], now: datetime
) -> tuple[list[Verdict], list[int]]:
    """Record answers from many pages; returns a verdict for each and the outbox rows to enqueue.

    The batch is one transaction: it is kept whole or not at all (then every verdict is FAILED). Answers to
    events with a capacity follow, each in a transaction of its own.
    """
    with factory() as session:
        verdicts, queued = _record_batch(session, settings, answers, now)
        session.commit()
    for index, verdict in enumerate(verdicts):
        if verdict == Verdict.ONE_BY_ONE:
            verdicts[index], more = _record_alone(factory, settings, answers[index], now)
            queued += more
    return verdicts, queued


def _record_batch(
    session: Session, settings: Settings, answers: Sequence[WebAnswer], now: datetime
) -> tuple[list[Verdict], list[int]]:
    public_ids = {public_id for answer in answers if (public_id := split_token(answer.token))}
    found = {
        invitation.public_id: invitation
        for invitation in session.scalars(
            select(Invitation)
            .where(Invitation.public_id.in_(public_ids))
            .options(joinedload(Invitation.recipient))
        )
    }
    # Their events apart, once each: joined, each row would carry (and parse) its event's columns again.
    events = {
        event.id: event
        for event in session.scalars(select(Event).where(Event.id.in_({i.event_id for i in found.values()})))
    }
    verdicts: list[Verdict] = []
    answered: set[int] = set()
    kept: list[tuple[Invitation, rsvp.AnswerOutcome]] = []
    histories: list[dict[str, Any]] = []
    for item in answers:
        invitation = found.get(split_token(item.token) or "")
        if invitation is None or not token_matches(
            settings.secret_key, item.token, invitation.public_id, invitation.token_version
        ):
            verdicts.append(Verdict.NOT_FOUND)
        elif invitation.id in answered:
            verdicts.append(Verdict.AGAIN)  # its history must follow the first one's, in its own batch
        elif events[invitation.event_id].capacity is not None:
            verdicts.append(Verdict.ONE_BY_ONE)
        else:
            answered.add(invitation.id)
            try:
                answer = rsvp.parse_answer(item.answer)
                guests, responses = rsvp.check_answer(
                    events[invitation.event_id],
                    invitation,
                    answer,
                    AnswerSource.WEB,
                    now,
                    item.guests,
                    item.responses,
                )
            except InputError:
                verdicts.append(Verdict.REFUSED)
                continue
            source = rsvp.opted_in(invitation, AnswerSource.WEB)
            changed, was_attending, history = rsvp.apply_answer(
                invitation, answer, source, now, item.user_agent, guests, responses
            )
            outcome = rsvp.AnswerOutcome(changed, 0, invitation.waitlist_position, [], was_attending, source)
            kept.append((invitation, outcome))
            histories.append(history)
            verdicts.append(Verdict.SAVED)
    session.flush()  # the invitations, in one UPDATE of many rows
    if not kept:
        return verdicts, []
    # Their history in one INSERT of many rows, its ids in the rows' order: no ORM object per row.
    inserted = insert(AnswerHistory).returning(AnswerHistory.id, sort_by_parameter_order=True)
    history_ids = session.scalars(inserted, histories).all()
    notices = [
        Notice(kind, invitation, invitation.recipient, events[invitation.event_id], f"h{history_id}")
        for (invitation, outcome), history_id in zip(kept, history_ids, strict=True)
        if (kind := rsvp.notice_kind(outcome))
    ]
    return verdicts, queue_many(session, notices, settings, now)


def _record_alone(
    factory: sessionmaker[Session], settings: Settings, answer: WebAnswer, now: datetime
) -> tuple[Verdict, list[int]]:
    with factory() as session:
        try:
            view = rsvp.find_by_token(session, settings.secret_key, answer.token)
            queued = record_one(session, settings, view.invitation, answer, now)
            session.commit()
        except NotFound:
            return Verdict.NOT_FOUND, []
        except InputError:
            session.rollback()
            return Verdict.REFUSED, []
        except Exception:
            # Its own transaction failed; the others in the batch are kept, so this one alone goes back.
            log.exception("recording an answer failed")
            session.rollback()
            return Verdict.FAILED, []
    return Verdict.SAVED, queued
