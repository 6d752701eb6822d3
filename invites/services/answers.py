"""Use case: record many answers from RSVP pages at once, as they arrive together under load.

One answer on its own costs a transaction of several statements, a commit and a task. When hundreds of
people answer at the same moment (the invitation has just landed), the web processes gather the answers that
arrive while the last batch is being written and record them here together: one SELECT finds them all, one
UPDATE and one INSERT keep the invitations and their history, one more INSERT queues the confirmations, and
one commit follows; the caller hands the outbox rows to the workers (invites/web/answer_batches.py, one task
for several batches). The rules are rsvp.py's own (`check_answer`, `apply_answer`, `notice_kind`), and a
press that was not clearly a person's is held, not recorded (invites.domain.evidence.judge,
invites.services.held).

An answer to an event with a capacity is decided one at a time under the event's lock, by
`rsvp.record_answer`, since its place depends on every answer before it.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from invites.db.models import AnswerHistory, Event, Invitation, Recipient
from invites.domain import evidence
from invites.domain.errors import InputError, NotFound
from invites.domain.states import Answer, AnswerSource
from invites.domain.tokens import split_token, token_matches
from invites.services import rsvp
from invites.services.events import find_invitee, get_event
from invites.services.held import Held, delivered_at, hold, replace_held
from invites.services.outbox import Notice, queue_many
from invites.settings import Settings

log = logging.getLogger(__name__)


class Verdict(enum.StrEnum):
    SAVED = "saved"  # recorded (or unchanged), its confirmation queued
    HELD = "held"  # not clearly a person's press: kept for the organiser, counted nowhere, nothing sent
    NOT_FOUND = "not-found"  # a forged, wrong or revoked token
    REFUSED = "refused"  # against the rules (deadline, questions, places): nothing changed
    AGAIN = "again"  # the same invitation answered earlier in this batch: it goes in the next one
    ONE_BY_ONE = "one-by-one"  # an event with a capacity: decided on its own, under the event's lock
    FAILED = "failed"  # the database failed it: nothing of it was kept
    LIMITED = "limited"  # over the rate limit: not even looked at


@dataclass(frozen=True)
class WebAnswer:
    """One POST of the RSVP page, as the form sent it, with what tells a person's press from a scanner's."""

    token: str
    answer: str
    guests: int = 0
    responses: dict[str, str] = field(default_factory=dict)
    user_agent: str = ""
    client: str = ""
    # The page's fields `served`, `evidence` and `step` (invites.domain.evidence.gather reads them).
    proof: dict[str, str] = field(default_factory=dict)

    def gather_evidence(self, secret: str, delivered: datetime | None, now: datetime) -> evidence.Evidence:
        return evidence.gather(secret, self.token, self.proof, self.client, self.user_agent, delivered, now)


PROOF_FIELDS = ("served", "evidence", "step")


def _person(invitation: Invitation | _Invitee) -> tuple[int, int, int]:
    return invitation.id, invitation.event_id, invitation.recipient_id


def from_form(token: str, fields: dict[str, str], user_agent: str, client: str = "") -> WebAnswer:
    """The answer a page's form carries: a guest count that is not a number fails the rules, not the parse."""
    try:
        guests = int(fields.get("guests") or 0)
    except ValueError:
        guests = -1
    responses = {key.removeprefix("q_"): value for key, value in fields.items() if key.startswith("q_")}
    proof = {key: fields[key][:200] for key in PROOF_FIELDS if key in fields}
    return WebAnswer(token, fields.get("answer", ""), guests, responses, user_agent, client, proof)


def _held(
    invitation: rsvp.AnswerState,
    event_id: int,
    answer: Answer,
    item: WebAnswer,
    reason: str,
    proof: dict[str, Any],
) -> Held:
    return Held(
        invitation_id=invitation.id,
        event_id=event_id,
        source=AnswerSource.WEB,
        reason=reason,
        evidence=proof,
        answer=answer,
        guests=item.guests,
        responses=item.responses,
    )


def record_one(
    session: Session, settings: Settings, invitation: Invitation, answer: WebAnswer, now: datetime
) -> tuple[Verdict, list[int]]:
    """Record one answer from the page, or hold it when it was not clearly a person's press; returns the
    verdict and the outbox rows to enqueue after the caller commits.

    Raises InputError when it breaks a rule, after which the caller rolls back.
    """
    chosen = rsvp.parse_answer(answer.answer)
    proof = answer.gather_evidence(
        settings.secret_key, delivered_at(session, [_person(invitation)]).get(invitation.id), now
    )
    judgement = evidence.judge(proof)
    if not judgement.person:
        hold(
            session,
            [_held(invitation, invitation.event_id, chosen, answer, judgement.reason, proof.to_json())],
            now,
        )
        return Verdict.HELD, []
    outcome = rsvp.record_answer(
        session,
        invitation,
        chosen,
        AnswerSource.WEB,
        now,
        answer.user_agent,
        guests=answer.guests,
        responses=answer.responses,
        evidence=proof.to_json(),
    )
    return Verdict.SAVED, rsvp.queue_notices(session, invitation, outcome, settings, now)


@dataclass(frozen=True)
class Recorded:
    """What an organiser's recording of an answer did: whether it changed the answer, and how many notices
    (confirmation, waiting list) it queued."""

    changed: bool
    notices: int


def record_for_organiser(
    factory: sessionmaker[Session],
    settings: Settings,
    slug: str,
    email: str,
    answer: str,
    now: datetime,
    enqueue: Callable[[list[int]], None],
    *,
    guests: int | None = None,
    responses: dict[str, str] | None = None,
    user_agent: str = "",
    recorded_by: str = "",
    client: str = "",
) -> Recorded:
    """The use case of an organiser recording someone's answer (they phoned, or said so at the door): the
    capacity and waiting list apply, the deadline does not, and they are sent the confirmation (or the
    waiting-list notice) as if they had answered. One transaction of its own; the notices are enqueued
    after its commit. Raises NotFound for an unknown event or person, InputError for a refused answer;
    then nothing is stored."""
    with factory() as session:
        _, invitation = find_invitee(session, get_event(session, slug), email)
        outcome = rsvp.record_answer(
            session,
            invitation,
            rsvp.parse_answer(answer),
            AnswerSource.ORGANISER,
            now,
            user_agent,
            guests=guests,
            responses=responses,
            # How it came: an organiser, signed in, said so.
            evidence={"recorded_by": recorded_by, "client": client},
        )
        notices = rsvp.queue_notices(session, invitation, outcome, settings, now)
        session.commit()
    if notices:
        enqueue(notices)
    return Recorded(outcome.changed, len(notices))


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


@dataclass
class _Invitee:
    """The columns of an invitation and its recipient that a batch reads and sets, as plain values.

    An ORM object per invitation and recipient costs more than the rest of the batch; this one carries what
    `rsvp.check_answer`, `opted_in` and `apply_answer` need (it is an `rsvp.AnswerState`).
    """

    id: int
    event_id: int
    recipient_id: int
    public_id: str
    token_version: int
    answer: Answer | None
    answered_at: datetime | None
    guests: int
    responses: dict[str, Any]
    waitlist_position: int | None
    pending: bool
    address: str
    email_key: str
    language: str | None
    undeliverable: bool


_INVITEE = select(
    Invitation.id,
    Invitation.event_id,
    Invitation.recipient_id,
    Invitation.public_id,
    Invitation.token_version,
    Invitation.answer,
    Invitation.answered_at,
    Invitation.guests,
    Invitation.responses,
    Invitation.waitlist_position,
    Invitation.pending,
    Recipient.email,
    Recipient.email_key,
    Recipient.language,
    Recipient.undeliverable,
).join(Recipient, Recipient.id == Invitation.recipient_id)


_Kept = tuple[_Invitee, rsvp.AnswerOutcome, dict[str, Any]]


@dataclass
class _Batch:
    """One batch's reads (its invitations, their events, their last deliveries) and what it decided."""

    settings: Settings
    now: datetime
    found: dict[str, _Invitee]
    events: dict[int, Event]
    delivered: dict[int, datetime]
    kept: dict[int, _Kept] = field(default_factory=dict)
    held: dict[int, Held] = field(default_factory=dict)

    def decide(self, item: WebAnswer) -> Verdict:
        """One answer's verdict; a person's answer is applied to its invitee, any other press held."""
        invitee = self.found.get(split_token(item.token) or "")
        if invitee is None or not token_matches(
            self.settings.secret_key, item.token, invitee.public_id, invitee.token_version
        ):
            return Verdict.NOT_FOUND
        if invitee.id in self.kept or invitee.id in self.held:
            return Verdict.AGAIN  # its history must follow the first one's, in its own batch
        try:
            answer = rsvp.parse_answer(item.answer)
        except InputError:
            return Verdict.REFUSED
        proof = item.gather_evidence(self.settings.secret_key, self.delivered.get(invitee.id), self.now)
        judgement = evidence.judge(proof)
        if not judgement.person:
            self.held[invitee.id] = _held(
                invitee, invitee.event_id, answer, item, judgement.reason, proof.to_json()
            )
            return Verdict.HELD
        event = self.events[invitee.event_id]
        if event.capacity is not None:
            return Verdict.ONE_BY_ONE
        try:
            guests, responses = rsvp.check_answer(
                event, invitee, answer, AnswerSource.WEB, self.now, item.guests, item.responses
            )
        except InputError:
            return Verdict.REFUSED
        source = rsvp.opted_in(invitee, AnswerSource.WEB)
        changed, was_attending, history = rsvp.apply_answer(
            invitee, answer, source, self.now, item.user_agent, guests, responses, proof.to_json()
        )
        outcome = rsvp.AnswerOutcome(changed, 0, invitee.waitlist_position, [], was_attending, source)
        self.kept[invitee.id] = (invitee, outcome, history)
        return Verdict.SAVED


def _record_batch(
    session: Session, settings: Settings, answers: Sequence[WebAnswer], now: datetime
) -> tuple[list[Verdict], list[int]]:
    public_ids = {public_id for answer in answers if (public_id := split_token(answer.token))}
    found = {
        row.public_id: _Invitee(*row)  # the columns in _INVITEE's order are the fields' order
        for row in session.execute(_INVITEE.where(Invitation.public_id.in_(public_ids)))
    }
    events = {
        event.id: event
        for event in session.scalars(select(Event).where(Event.id.in_({i.event_id for i in found.values()})))
    }
    batch = _Batch(settings, now, found, events, delivered_at(session, map(_person, found.values())))
    verdicts = [batch.decide(item) for item in answers]
    hold(session, batch.held.values(), now)
    if not batch.kept:
        return verdicts, []
    replace_held(session, batch.kept, now)
    return verdicts, _write(session, batch, settings, now)


def _write(session: Session, batch: _Batch, settings: Settings, now: datetime) -> list[int]:
    """The batch's answers: the invitations in one UPDATE of many rows (by primary key), their history in
    one INSERT (its ids returned in the rows' order), their confirmations queued; returns the outbox rows."""
    session.execute(
        update(Invitation),
        [
            {
                "id": invitee.id,
                "answer": invitee.answer,
                "answered_at": invitee.answered_at,
                "guests": invitee.guests,
                "responses": invitee.responses,
                "waitlist_position": invitee.waitlist_position,
                "pending": invitee.pending,
            }
            for invitee, _, _ in batch.kept.values()
        ],
    )
    inserted = insert(AnswerHistory).returning(AnswerHistory.id, sort_by_parameter_order=True)
    history_ids = session.scalars(inserted, [history for _, _, history in batch.kept.values()]).all()
    notices = [
        Notice(
            kind,
            batch.events[invitee.event_id],
            invitee.id,
            invitee.recipient_id,
            invitee.address,
            invitee.language,
            f"h{history_id}",
            invitee.email_key,
            invitee.undeliverable,
        )
        for (invitee, outcome, _), history_id in zip(batch.kept.values(), history_ids, strict=True)
        if (kind := rsvp.notice_kind(outcome))
    ]
    return queue_many(session, notices, settings, now)


def _record_alone(
    factory: sessionmaker[Session], settings: Settings, answer: WebAnswer, now: datetime
) -> tuple[Verdict, list[int]]:
    with factory() as session:
        try:
            view = rsvp.find_by_token(session, settings.secret_key, answer.token)
            verdict, queued = record_one(session, settings, view.invitation, answer, now)
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
    return verdict, queued
