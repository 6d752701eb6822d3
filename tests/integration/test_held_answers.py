"""Presses of the RSVP page that were not clearly a person's are held (invites/domain/evidence.py,
invites/services/held.py), through a real uvicorn on real databases: they change no answer, send nothing, move
nobody on the waiting list and confirm no registration, and the counts are of people only."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, update

from invites import db
from invites.db.models import AnswerHistory, HeldAnswer, OutboundMessage
from invites.domain.evidence import read_stamp
from invites.domain.states import Answer, AnswerSource, HeldState, MessageStatus
from invites.domain.tokens import make_token
from invites.readmodels.status import event_status
from invites.services import campaigns
from invites.services.events import get_event
from invites.services.held import open_held
from invites.services.registration import RegistrationForm, register
from invites.services.rsvp import places_taken
from tests.conftest import as_person
from tests.integration.test_answer_batches import tokens
from tests.integration.test_registration import open_event
from tests.integration.test_rsvp import SLUG, setup_event, state

BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0"
CHOICE = {"q_workshop": "zorg"}
# A scripted trusted click: one pointer move to its target, then the press.
ONE_MOVE = "js;m=1;k=0;w=0;t=0;p=1"
# element.click() or form.requestSubmit() after a convincing pointer path: the press itself is untrusted.
UNTRUSTED = "js;m=24;k=0;w=1;t=0;p=0"


def without_script(fields: dict[str, Any]) -> dict[str, Any]:
    """What a browser without JavaScript posts: the page's stamp, but no evidence field."""
    return {key: value for key, value in fields.items() if key != "evidence"}


def held_rows(runtime: Any, invitation_id: int) -> list[HeldAnswer]:
    with runtime.sessions() as session:
        query = select(HeldAnswer).where(HeldAnswer.invitation_id == invitation_id).order_by(HeldAnswer.id)
        return list(session.scalars(query))


def history(runtime: Any, invitation_id: int) -> list[AnswerHistory]:
    with runtime.sessions() as session:
        query = select(AnswerHistory).where(AnswerHistory.invitation_id == invitation_id)
        return list(session.scalars(query.order_by(AnswerHistory.id)))


def outbox(runtime: Any) -> int:
    with runtime.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(OutboundMessage)) or 0)


def counts(runtime: Any) -> dict[str, Any]:
    """The organiser's read models: the status counts, and how many answers wait under "te controleren"."""
    with runtime.sessions() as session:
        event = get_event(session, SLUG)
        return {**event_status(session, event), "held": open_held(session, event.id).total}


def confirm_form(page: str) -> dict[str, str]:
    """The hidden fields of the "Nog één stap" form, as a browser without scripts would post them."""
    form = re.search(r'<form method="post" action="/r/[^"]+" data-evidence>(.*?)</form>', page, re.DOTALL)
    assert form and 'name="step" value="confirm"' in form[1], page
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form[1])
    return {name: html.unescape(value) for name, value in fields}


def test_presses_that_are_not_clearly_a_persons_are_held_until_a_person_answers(
    runtime: Any, web: str, settings: Any
) -> None:
    ids = setup_event(runtime, 2)
    token = tokens(runtime, settings)[0]
    accept = {"answer": "accepted", **CHOICE}
    # Each form is made just before its POST: the stamp's age is the dwell the server measures.
    presses: list[tuple[str, Callable[[], dict[str, Any]], str]] = [
        ("no stamp", lambda: accept, "gegeven zonder dat de antwoordpagina was geladen"),
        ("0.2 s", lambda: as_person(settings, token, accept, read_for=0.2), "sneller dan iemand leest"),
        ("move", lambda: {**as_person(settings, token, accept), "evidence": ONE_MOVE}, "geen muisbeweging"),
        ("script", lambda: {**as_person(settings, token, accept), "evidence": UNTRUSTED}, "door een script"),
    ]
    before = outbox(runtime)
    with httpx.Client(base_url=web, headers={"User-Agent": BROWSER}) as client:
        for number, (name, form, reason) in enumerate(presses, start=1):
            response = client.post(f"/r/{token}", data=form(), follow_redirects=False)
            assert response.status_code == 202 and "Nog één stap" in response.text, name
            assert state(runtime, ids[0]).answer is None, name
            rows = held_rows(runtime, ids[0])
            assert [row.state for row in rows] == [HeldState.REPLACED] * (number - 1) + [HeldState.HELD], name
            assert reason in rows[-1].reason, (name, rows[-1].reason)
            assert (rows[-1].answer, rows[-1].responses, rows[-1].source) == (
                Answer.ACCEPTED,
                {"workshop": "zorg"},
                AnswerSource.WEB,
            ), name
            assert rows[-1].evidence["user_agent"] == BROWSER, name
            assert outbox(runtime) == before, f"{name}: a held answer sends nothing"
        # A form sent as multipart skips the batch: the app's own route holds it the same way.
        fields = {**as_person(settings, token, accept), "evidence": ONE_MOVE}
        multipart = client.post(f"/r/{token}", files={key: (None, value) for key, value in fields.items()})
        assert multipart.status_code == 202 and state(runtime, ids[0]).answer is None
    rows = held_rows(runtime, ids[0])
    assert [row.state for row in rows] == [HeldState.REPLACED] * 4 + [HeldState.HELD]
    stored = [row.evidence for row in rows]
    assert stored[0]["dwell"] is None and stored[0]["seen"]["script"] is False
    assert stored[1]["dwell"] < 1 and stored[1]["seen"]["moves"] == 24
    assert stored[2]["seen"] == {
        "script": True,
        "moves": 1,
        "keys": 0,
        "wheel": 0,
        "touch": 0,
        "trusted_press": True,
    }
    assert stored[3]["seen"]["trusted_press"] is False and stored[3]["dwell"] >= 5
    assert history(runtime, ids[0]) == [] and outbox(runtime) == before
    held = counts(runtime)
    assert (held["accepted"], held["no_answer"], held["held"]) == (0, 2, 1), "counted nowhere"

    with httpx.Client(base_url=web, headers={"User-Agent": BROWSER}) as client:
        answered = client.post(f"/r/{token}", data=as_person(settings, token, accept), follow_redirects=False)
    assert answered.status_code == 303 and answered.headers["location"] == f"/r/{token}?saved=1"
    assert state(runtime, ids[0]).answer == Answer.ACCEPTED
    assert {row.state for row in held_rows(runtime, ids[0])} == {HeldState.REPLACED}
    [recorded] = history(runtime, ids[0])
    proof = recorded.detail["evidence"]
    assert 5 <= proof["dwell"] < 7 and proof["seen"]["moves"] == 24 and proof["seen"]["trusted_press"]
    assert outbox(runtime) == before + 1, "the person's answer is confirmed"
    person = counts(runtime)
    assert (person["accepted"], person["no_answer"], person["held"]) == (1, 1, 0)


def test_without_a_script_the_confirmation_counts_a_minute_after_delivery(
    runtime: Any, web: str, settings: Any
) -> None:
    ids = setup_event(runtime, 3)
    links = tokens(runtime, settings)
    campaigns.start_campaign(
        runtime.sessions, SLUG, "invitation", settings, runtime.templates, datetime.now(UTC)
    )
    now = datetime.now(UTC)
    # p0's invitation is still queued (never delivered), p1's was delivered two minutes ago, p2's 10 s ago.
    with db.transaction(runtime.sessions) as session:
        for invitation_id, ago in ((ids[1], 120), (ids[2], 10)):
            session.execute(
                update(OutboundMessage)
                .where(OutboundMessage.invitation_id == invitation_id)
                .values(status=MessageStatus.SENT, sent_at=now - timedelta(seconds=ago))
            )
    before = outbox(runtime)
    decline = {"answer": "declined", **CHOICE}
    pages: dict[int, dict[str, str]] = {}
    with httpx.Client(base_url=web, headers={"User-Agent": BROWSER}) as client:
        for invitation_id, token in zip(ids, links, strict=True):
            first = client.post(f"/r/{token}", data=without_script(as_person(settings, token, decline)))
            assert first.status_code == 202 and 'name="step" value="confirm"' in first.text
            pages[invitation_id] = form = confirm_form(first.text)
            assert (form["answer"], form["q_workshop"], form["evidence"]) == ("declined", "zorg", "")
            fresh = read_stamp(settings.secret_key, token, form["served"], datetime.now(UTC))
            assert fresh and datetime.now(UTC) - fresh.served_at < timedelta(seconds=5), "a fresh stamp"
            assert "wacht op de bevestiging" in held_rows(runtime, invitation_id)[-1].reason
            # The confirm form pressed as soon as it is served (a scanner following the page): held again.
            at_once = client.post(f"/r/{token}", data=form)
            assert at_once.status_code == 202 and state(runtime, invitation_id).answer is None
            assert "sneller dan iemand leest" in held_rows(runtime, invitation_id)[-1].reason
        assert counts(runtime)["held"] == 3 and outbox(runtime) == before

        # A person reads the confirm page for a few seconds, then presses "Bevestigen".
        confirmed = {
            invitation_id: client.post(
                f"/r/{token}",
                data={**pages[invitation_id], **without_script(as_person(settings, token, {}))},
                follow_redirects=False,
            )
            for invitation_id, token in zip(ids, links, strict=True)
        }
    assert [confirmed[i].status_code for i in ids] == [303, 303, 202]
    assert [state(runtime, i).answer for i in ids] == [Answer.DECLINED, Answer.DECLINED, None]
    for invitation_id in ids[:2]:
        [recorded] = history(runtime, invitation_id)
        proof = recorded.detail["evidence"]
        assert proof["confirmation"] is True and proof["seen"]["script"] is False and proof["dwell"] >= 5
        assert {row.state for row in held_rows(runtime, invitation_id)} == {HeldState.REPLACED}
    assert history(runtime, ids[1])[0].detail["evidence"]["since_delivery"] >= 120
    soon = held_rows(runtime, ids[2])
    assert [row.state for row in soon] == [HeldState.REPLACED] * 2 + [HeldState.HELD]
    assert "na de bezorging bevestigd, zonder JavaScript" in soon[-1].reason, soon[-1].reason
    assert 10 <= soon[-1].evidence["since_delivery"] < 60 and soon[-1].evidence["confirmation"] is True
    assert history(runtime, ids[2]) == []
    assert outbox(runtime) == before + 2, "a confirmation for each counted answer, none for the held one"
    seen = counts(runtime)
    assert (seen["declined"], seen["no_answer"], seen["held"]) == (2, 1, 1)


def test_a_held_answer_moves_nobody_on_the_waiting_list(runtime: Any, web: str, settings: Any) -> None:
    ids = setup_event(runtime, 2, capacity=1)
    first, second = tokens(runtime, settings)
    accept = {"answer": "accepted", **CHOICE}
    with httpx.Client(base_url=web, headers={"User-Agent": BROWSER}) as client:
        for token in (first, second):
            answered = client.post(
                f"/r/{token}", data=as_person(settings, token, accept), follow_redirects=False
            )
            assert answered.status_code == 303
        assert [state(runtime, i).waitlist_position for i in ids] == [None, 1], "B waits for A's place"
        before = outbox(runtime)
        # A scanner presses "Nee" in A's invitation: by the batch, and by the app's own route (multipart).
        bare = client.post(f"/r/{first}", data={"answer": "declined"}, follow_redirects=False)
        fields = {**as_person(settings, first, {"answer": "declined"}), "evidence": UNTRUSTED}
        scripted = client.post(f"/r/{first}", files={key: (None, value) for key, value in fields.items()})
    assert (bare.status_code, scripted.status_code) == (202, 202)
    kept = state(runtime, ids[0])
    assert (kept.answer, kept.waitlist_position) == (Answer.ACCEPTED, None), "A keeps the place"
    assert state(runtime, ids[1]).waitlist_position == 1, "B is not moved up"
    assert [row.state for row in held_rows(runtime, ids[0])] == [HeldState.REPLACED, HeldState.HELD]
    assert outbox(runtime) == before, "nobody is told of a place"
    promoted = select(func.count()).where(AnswerHistory.source == AnswerSource.WAITLIST)
    with runtime.sessions() as session:
        assert places_taken(session, get_event(session, SLUG).id) == 1 and session.scalar(promoted) == 0
    seen = counts(runtime)
    assert (seen["accepted"], seen["declined"], seen["waitlisted"], seen["places_taken"]) == (2, 0, 1, 1)
    assert seen["held"] == 1


def test_a_scanners_press_confirms_no_registration(runtime: Any, web: str, settings: Any) -> None:
    open_event(runtime)
    with db.transaction(runtime.sessions) as session:
        event = get_event(session, SLUG)
        form = RegistrationForm(name="Karin Kok", email="karin@example.nl", role="wethouder")
        invitation_id = register(session, event, form, datetime.now(UTC)).invitation_id
    assert invitation_id is not None
    pending = state(runtime, invitation_id)
    token = make_token(settings.secret_key, pending.public_id, pending.token_version)
    with httpx.Client(base_url=web, headers={"User-Agent": BROWSER}) as client:
        # A gateway opens the personal link, as an ordinary browser would, and presses "Ja, ik kom" at once.
        page = client.get(f"/r/{token}?answer=accepted")
        served = re.search(r'name="served" value="([^"]+)"', page.text)
        assert page.status_code == 200 and served
        scanned = client.post(
            f"/r/{token}",
            data={"answer": "accepted", "served": served[1], "evidence": "js;m=0;k=0;w=0;t=0;p=1"},
            follow_redirects=False,
        )
        assert scanned.status_code == 202
        assert state(runtime, invitation_id).pending, "the scanner's press is not the opt-in"
        assert history(runtime, invitation_id) == []
        waiting = counts(runtime)
        assert (waiting["invited"], waiting["pending_registrations"], waiting["accepted"]) == (0, 1, 0)
        assert waiting["held"] == 1

        confirmed = client.post(
            f"/r/{token}", data=as_person(settings, token, {"answer": "accepted"}), follow_redirects=False
        )
    assert confirmed.status_code == 303
    registrant = state(runtime, invitation_id)
    assert not registrant.pending and registrant.answer == Answer.ACCEPTED
    assert [row.source for row in history(runtime, invitation_id)] == [AnswerSource.REGISTRATION]
    assert [row.state for row in held_rows(runtime, invitation_id)] == [HeldState.REPLACED]
    person = counts(runtime)
    assert (person["invited"], person["pending_registrations"], person["accepted"]) == (1, 0, 1)
    assert person["held"] == 0
