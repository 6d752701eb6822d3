"""RSVP that counts what people really answered, on real databases and a real uvicorn: questions, history,
the capacity and its waiting list, concurrent accepts, link scanners and rate limits."""

from __future__ import annotations

import io
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from invites import db
from invites.adapters.embedded import broker_url, client_for
from invites.adapters.ratelimit import RateLimiter
from invites.db.models import AnswerHistory, Event, Invitation, OutboundMessage, PageView
from invites.domain.errors import InputError
from invites.domain.eventfile import parse_event_file
from invites.domain.states import Answer, AnswerSource
from invites.domain.tokens import make_token
from invites.services.events import get_event, load_event
from invites.services.imports import import_stream
from invites.services.rsvp import likely_scanner, places_taken, record_answer
from tests.conftest import EVENT_FILE, NOW, as_person

SLUG = "lokaal-samenspel-2018"
RSVP_OPTIONS = """
capacity = {capacity}

[rsvp]
max_guests = 2
dietary = true
remark = true

[[rsvp.questions]]
key = "workshop"
label = "Welke tafel kiest u?"
label_en = "Which table do you choose?"
type = "choice"
choices = ["wonen", "zorg"]
required = true
"""


def setup_event(runtime: Any, people: int, capacity: int = 50) -> list[int]:
    text = EVENT_FILE.read_text(encoding="utf-8")
    head, rest = text.split("[venue]", 1)
    spec = parse_event_file((head + RSVP_OPTIONS.format(capacity=capacity) + "\n[venue]" + rest).encode())
    data = ("email\n" + "".join(f"p{i}@example.org\n" for i in range(people))).encode()
    with db.transaction(runtime.sessions) as session:
        event = load_event(session, spec, NOW).event
        import_stream(session, event, io.BytesIO(data), "l.csv", len(data), NOW)
    with runtime.sessions() as session:
        return list(session.scalars(select(Invitation.id).order_by(Invitation.id)))


def answer(runtime: Any, invitation_id: int, value: Answer, **options: Any) -> Any:
    with runtime.sessions() as session:
        invitation = session.get_one(Invitation, invitation_id)
        outcome = record_answer(session, invitation, value, AnswerSource.WEB, NOW, "test", **options)
        session.commit()
        return outcome


def state(runtime: Any, invitation_id: int) -> Invitation:
    with runtime.sessions() as session:
        return session.get_one(Invitation, invitation_id)


def test_answers_carry_guests_and_questions_and_keep_a_history(runtime: Any) -> None:
    ids = setup_event(runtime, 1)
    with pytest.raises(InputError, match="please answer: Welke tafel kiest u"):
        answer(runtime, ids[0], Answer.ACCEPTED)
    with pytest.raises(InputError, match="between 0 and 2"):
        answer(runtime, ids[0], Answer.ACCEPTED, guests=3, responses={"workshop": "zorg"})
    with pytest.raises(InputError, match="choose one of wonen, zorg"):
        answer(runtime, ids[0], Answer.ACCEPTED, responses={"workshop": "sport"})
    answer(
        runtime,
        ids[0],
        Answer.ACCEPTED,
        guests=1,
        responses={"workshop": "zorg", "dietary": " vegetarisch ", "unknown": "dropped"},
    )
    answer(runtime, ids[0], Answer.DECLINED)
    invitation = state(runtime, ids[0])
    assert invitation.answer == Answer.DECLINED and invitation.guests == 1
    assert invitation.responses == {"workshop": "zorg", "dietary": "vegetarisch"}
    with runtime.sessions() as session:
        history = session.scalars(select(AnswerHistory).order_by(AnswerHistory.id)).all()
        assert [(h.answer, h.source, h.user_agent) for h in history] == [
            (Answer.ACCEPTED, AnswerSource.WEB, "test"),
            (Answer.DECLINED, AnswerSource.WEB, "test"),
        ]


def test_the_waiting_list_fills_and_moves_up(runtime: Any) -> None:
    ids = setup_event(runtime, 5, capacity=3)
    choice = {"workshop": "wonen"}
    assert answer(runtime, ids[0], Answer.ACCEPTED, guests=1, responses=choice).waitlist_position is None
    assert answer(runtime, ids[1], Answer.ACCEPTED, responses=choice).waitlist_position is None
    assert answer(runtime, ids[2], Answer.ACCEPTED, guests=1, responses=choice).waitlist_position == 1
    assert answer(runtime, ids[3], Answer.ACCEPTED, responses=choice).waitlist_position == 2
    with pytest.raises(InputError, match="only 1 places are left"):
        answer(runtime, ids[1], Answer.ACCEPTED, guests=1, responses=choice)

    freed = answer(runtime, ids[0], Answer.DECLINED)
    assert freed.promoted == [ids[2]], "the first on the list moves up when their party fits"
    assert state(runtime, ids[2]).waitlist_position is None
    assert state(runtime, ids[3]).waitlist_position == 1, "the list is renumbered"
    with runtime.sessions() as session:
        assert places_taken(session, get_event(session, SLUG).id) == 3
        promoted = session.scalars(
            select(AnswerHistory).where(AnswerHistory.source == AnswerSource.WAITLIST)
        ).one()
        assert promoted.invitation_id == ids[2]


def test_concurrent_accepts_never_overbook(runtime: Any, web: str, settings: Any) -> None:
    ids = setup_event(runtime, 200, capacity=50)
    with runtime.sessions() as session:
        tokens = [
            make_token(settings.secret_key, inv.public_id, inv.token_version)
            for inv in session.scalars(select(Invitation).order_by(Invitation.id))
        ]
    limits = httpx.Limits(max_connections=200)
    with httpx.Client(base_url=web, timeout=120, limits=limits) as client, ThreadPoolExecutor(64) as pool:
        statuses = list(
            pool.map(
                lambda token: (
                    client.post(
                        f"/r/{token}",
                        data=as_person(settings, token, {"answer": "accepted", "q_workshop": "wonen"}),
                        follow_redirects=False,
                    ).status_code
                ),
                tokens,
            )
        )
    assert statuses == [303] * 200, "every answer is recorded, none lost"
    with runtime.sessions() as session:
        event_id = get_event(session, SLUG).id
        confirmed = session.scalars(
            select(Invitation).where(
                Invitation.answer == Answer.ACCEPTED, Invitation.waitlist_position.is_(None)
            )
        ).all()
        waiting = sorted(
            session.scalars(
                select(Invitation.waitlist_position).where(Invitation.waitlist_position.is_not(None))
            )
        )
        assert len(confirmed) == 50 and places_taken(session, event_id) == 50
        assert waiting == list(range(1, 151)), "150 on the waiting list, numbered without gaps"
        assert session.query(AnswerHistory).count() == 200
    assert len(ids) == 200


def test_scanners_open_but_never_answer(runtime: Any, web: str, settings: Any) -> None:
    ids = setup_event(runtime, 2)
    with runtime.sessions() as session:
        invitation = session.get_one(Invitation, ids[0])
        token = make_token(settings.secret_key, invitation.public_id, invitation.token_version)
    safelinks = "Mozilla/5.0 (Windows NT 10.0) Microsoft Office SafeLinks"
    person = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Version/17.0 Safari/605.1.15"
    with httpx.Client(base_url=web) as client:
        assert client.get(f"/r/{token}?answer=accepted", headers={"User-Agent": safelinks}).status_code == 200
        assert client.get(f"/r/{token}?answer=declined", headers={"User-Agent": safelinks}).status_code == 200
        assert client.head(f"/r/{token}", headers={"User-Agent": person}).status_code == 200
        assert client.get(f"/r/{token}", headers={"User-Agent": person}).status_code == 200
    with runtime.sessions() as session:
        views = session.scalars(select(PageView).order_by(PageView.id)).all()
        assert [v.likely_scanner for v in views] == [True, True, False], "a HEAD is not even an open"
        assert session.get_one(Invitation, ids[0]).answer is None, "scanner GETs changed nothing"
    assert likely_scanner(person, NOW - timedelta(seconds=5), NOW), "seconds after delivery is a scanner"
    assert not likely_scanner(person, NOW - timedelta(minutes=5), NOW)


def test_a_fetch_seconds_after_delivery_is_flagged(runtime: Any, web: str, settings: Any) -> None:
    from datetime import UTC, datetime

    from invites.services import campaigns

    ids = setup_event(runtime, 1)
    campaigns.start_campaign(runtime.sessions, SLUG, "invitation", settings, runtime.templates, NOW)
    with runtime.sessions() as session, session.begin():
        session.execute(update(OutboundMessage).values(status="sent", sent_at=datetime.now(UTC)))
        invitation = session.get_one(Invitation, ids[0])
        token = make_token(settings.secret_key, invitation.public_id, invitation.token_version)
    with httpx.Client(base_url=web) as client:
        client.get(f"/r/{token}", headers={"User-Agent": "Mozilla/5.0 Firefox/140.0"})
    with runtime.sessions() as session:
        assert session.scalars(select(PageView.likely_scanner)).one() is True


def test_the_rsvp_endpoints_are_rate_limited(runtime: Any, web: str, settings: Any) -> None:
    ids = setup_event(runtime, 1)
    with runtime.sessions() as session:
        invitation = session.get_one(Invitation, ids[0])
        token = make_token(settings.secret_key, invitation.public_id, invitation.token_version)
    with httpx.Client(base_url=web) as client:
        codes = [client.get(f"/r/{token}").status_code for _ in range(31)]
        refused = client.post(f"/r/{token}", data=as_person(settings, token, {"answer": "declined"}))
    assert codes[:30] == [200] * 30 and codes[30] == 429
    assert refused.status_code == 429
    assert state(runtime, ids[0]).answer is None


def test_the_calendar_download_shares_the_links_rate_limit(runtime: Any, web: str, settings: Any) -> None:
    ids = setup_event(runtime, 2)
    with runtime.sessions() as session:
        first, second = (session.get_one(Invitation, i) for i in ids)
        token = make_token(settings.secret_key, first.public_id, first.token_version)
        other = make_token(settings.secret_key, second.public_id, second.token_version)
    with httpx.Client(base_url=web) as client:
        codes = [client.get(f"/r/{token}/invite.ics").status_code for _ in range(31)]
        page = client.get(f"/r/{token}")
        unaffected = client.get(f"/r/{other}/invite.ics")
    assert codes[:30] == [200] * 30 and codes[30] == 429
    assert page.status_code == 429, "the page and its calendar file count against one budget"
    assert unaffected.status_code == 200 and unaffected.text.startswith("BEGIN:VCALENDAR")
    # Guessing links for their calendar files meets the per-client limit (INVITES_RSVP_CLIENT_LIMIT, here
    # 20 in a namespace of its own), as guessing pages does.
    redis = client_for(broker_url(settings))
    runtime.limiter = RateLimiter(redis, per_client=20, namespace=f"{settings.queue}-{uuid.uuid4().hex[:8]}")
    with httpx.Client(base_url=web, transport=httpx.HTTPTransport(local_address="127.0.0.7")) as stranger:
        guesses = [stranger.get(f"/r/not-a-token-{n}/invite.ics").status_code for n in range(20)]
        refused = stranger.get(f"/r/{other}/invite.ics")
    assert guesses == [404] * 20
    assert refused.status_code == 429 and "te vaak opgevraagd" in refused.text


def test_the_form_shows_the_questions_and_reports_a_bad_answer(runtime: Any, web: str, settings: Any) -> None:
    ids = setup_event(runtime, 1)
    with runtime.sessions() as session:
        invitation = session.get_one(Invitation, ids[0])
        token = make_token(settings.secret_key, invitation.public_id, invitation.token_version)
        session.execute(update(Event).values(capacity=None))
        session.commit()
    with httpx.Client(base_url=web) as client:
        page = client.get(f"/r/{token}").text
        assert 'name="guests"' in page and 'name="q_workshop"' in page and 'name="q_dietary"' in page
        assert "Welke tafel kiest u?" in page and 'name="q_accessibility"' not in page
        bad = client.post(
            f"/r/{token}",
            data=as_person(settings, token, {"answer": "accepted", "guests": "9", "q_workshop": "zorg"}),
        )
        assert bad.status_code == 400 and "between 0 and 2" in bad.text
        good = client.post(
            f"/r/{token}",
            data=as_person(settings, token, {"answer": "accepted", "guests": "2", "q_workshop": "zorg"}),
            follow_redirects=True,
        )
        assert good.status_code == 200 and "uw antwoord is opgeslagen" in good.text
    assert state(runtime, ids[0]).guests == 2


def test_read_models_for_the_organiser(runtime: Any, web: str, organiser: Any) -> None:
    ids = setup_event(runtime, 4, capacity=2)
    choice = {"workshop": "wonen"}
    answer(runtime, ids[0], Answer.ACCEPTED, responses=choice)
    answer(runtime, ids[1], Answer.ACCEPTED, responses=choice)
    answer(runtime, ids[2], Answer.ACCEPTED, responses=choice)
    answer(runtime, ids[3], Answer.DECLINED)
    with httpx.Client(base_url=web, headers=organiser.headers) as client:
        status = client.get(f"/api/v1/events/{SLUG}/status").json()
        assert (status["accepted"], status["declined"], status["waitlisted"]) == (3, 1, 1)
        assert (status["places_taken"], status["capacity"]) == (2, 2)
        days = client.get(f"/api/v1/events/{SLUG}/timeline").json()
        assert days == [{"day": "2018-01-15", "accepted": 3, "declined": 1, "tentative": 0}]
        accepted = client.get(f"/api/v1/events/{SLUG}/attendees", params={"answer": "accepted"}).json()
        assert [p["email"] for p in accepted] == ["p0@example.org", "p1@example.org", "p2@example.org"]
        assert [p["waitlist_position"] for p in accepted] == [None, None, 1]
        assert client.get(f"/api/v1/events/{SLUG}/attendees", params={"answer": "maybe"}).status_code == 400
        checkin = client.get(f"/events/{SLUG}/checkin").text
        assert "p0@example.org" in checkin and "p1@example.org" in checkin
        assert "p2@example.org" not in checkin, "the waiting list is not on the door list"
        assert "2 aanmeldingen" in checkin


def test_an_organiser_revokes_a_link(runtime: Any, web: str, settings: Any) -> None:
    from tests.conftest import run_cli

    ids = setup_event(runtime, 1)
    old = state(runtime, ids[0])
    token = make_token(settings.secret_key, old.public_id, old.token_version)
    result = run_cli(settings, "rsvp", "revoke", SLUG, "P0@example.org")
    assert "earlier links to lokaal-samenspel-2018 no longer work" in result.stdout
    fresh = state(runtime, ids[0])
    new = make_token(settings.secret_key, fresh.public_id, fresh.token_version)
    with httpx.Client(base_url=web) as client:
        assert client.get(f"/r/{token}").status_code == 404
        assert client.get(f"/r/{new}").status_code == 200
    assert run_cli(settings, "rsvp", "revoke", SLUG, "nobody@example.org", check=False).returncode == 1
