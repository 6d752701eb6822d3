"""Public registration with double opt-in, through a real uvicorn and real databases."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from invites import db
from invites.db.models import AnswerHistory, Event, Invitation, OutboundMessage, Recipient
from invites.domain.eventfile import parse_event_file
from invites.domain.states import AnswerSource
from invites.domain.tokens import make_token
from invites.services.events import load_event
from invites.services.suppression import suppress
from tests.conftest import EVENT_FILE, NOW, as_person

SLUG = "lokaal-samenspel-2018"


def open_event(runtime: Any, **changes: Any) -> None:
    """The example event, moved into the future so that registration is open now."""
    spec = parse_event_file(EVENT_FILE.read_bytes())
    with db.transaction(runtime.sessions) as session:
        event = load_event(session, spec, NOW).event
        shift = datetime.now(UTC) + timedelta(days=30) - event.starts_at
        event.starts_at += shift
        event.ends_at += shift
        event.registration_closes_at = event.starts_at
        for name, value in changes.items():
            setattr(event, name, value)


def form(**fields: str) -> dict[str, str]:
    return {
        "name": "Karin Kok",
        "email": "karin@example.nl",
        "role": "wethouder",
        "municipality": "Houten",
        **fields,
    }


def invitations(runtime: Any) -> list[Invitation]:
    with runtime.sessions() as session:
        return list(session.scalars(select(Invitation).order_by(Invitation.id)))


def test_double_opt_in_makes_a_registrant_an_invitee(
    runtime: Any, web: str, settings: Any, organiser: Any
) -> None:
    open_event(runtime)
    with httpx.Client(base_url=web) as client:
        page = client.get(f"/e/{SLUG}/register")
        assert page.status_code == 200 and 'name="website"' in page.text and "Houten" in page.text
        done = client.post(f"/e/{SLUG}/register", data=form())
        assert done.status_code == 200 and "Kijk in uw e-mail" in done.text
        [pending] = invitations(runtime)
        assert pending.pending and pending.answer is None
        status = client.get(f"/api/v1/events/{SLUG}/status", headers=organiser.headers).json()
        assert (status["invited"], status["pending_registrations"]) == (0, 1)
        with runtime.sessions() as session:
            row = session.scalars(select(OutboundMessage)).one()
            recipient = session.get_one(Recipient, pending.recipient_id)
        assert (row.kind, row.to_address, row.status) == (
            "registration-confirmation",
            "karin@example.nl",
            "queued",
        )
        assert (recipient.role_key, recipient.municipality_code) == ("alderman", "GM0321")

        token = make_token(settings.secret_key, pending.public_id, pending.token_version)
        assert client.get(f"/r/{token}?answer=accepted").status_code == 200
        assert invitations(runtime)[0].pending, "opening the link is not yet the opt-in"
        client.post(f"/r/{token}", data=as_person(settings, token, {"answer": "accepted"}))
    [confirmed] = invitations(runtime)
    assert not confirmed.pending and confirmed.answer == "accepted"
    with runtime.sessions() as session:
        assert session.scalars(select(AnswerHistory.source)).one() == AnswerSource.REGISTRATION
        assert session.scalars(select(OutboundMessage.kind).order_by(OutboundMessage.id)).all() == [
            "registration-confirmation",
            "rsvp-confirmation",
        ]


def test_bots_suppressed_addresses_and_bad_input(runtime: Any, web: str) -> None:
    open_event(runtime)
    with db.transaction(runtime.sessions) as session:
        suppress(session, "gone@example.nl", "unsubscribed", NOW)
    with httpx.Client(base_url=web) as client:
        bot = client.post(f"/e/{SLUG}/register", data=form(website="https://spam.example.com"))
        gone = client.post(f"/e/{SLUG}/register", data=form(email="gone@example.nl"))
        assert bot.status_code == gone.status_code == 200
        assert "Kijk in uw e-mail" in bot.text and "Kijk in uw e-mail" in gone.text, (
            "nothing tells them apart"
        )
        bad = client.post(f"/e/{SLUG}/register", data=form(email="karin-at-example.nl"))
        assert bad.status_code == 400 and "dat e-mailadres klopt niet" in bad.text
        nameless = client.post(f"/e/{SLUG}/register", data=form(name="  "))
        assert nameless.status_code == 400 and "vul uw naam in" in nameless.text
    assert invitations(runtime) == []
    with runtime.sessions() as session:
        assert session.scalars(select(OutboundMessage)).all() == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"registration_enabled": False}, "kunt u zich niet zelf aanmelden"),
        ({"registration_opens_at": datetime.now(UTC) + timedelta(days=1)}, "Aanmelden is nog niet geopend"),
        ({"registration_closes_at": datetime.now(UTC) - timedelta(hours=1)}, "Aanmelden is gesloten"),
    ],
    ids=["disabled", "not-yet", "closed"],
)
def test_registration_opens_and_closes(runtime: Any, web: str, changes: dict[str, Any], message: str) -> None:
    open_event(runtime, **changes)
    with httpx.Client(base_url=web) as client:
        response = client.post(f"/e/{SLUG}/register", data=form())
    assert response.status_code == 400 and message in response.text
    assert invitations(runtime) == []


def test_a_forwarded_link_registers_the_reader_only_when_allowed(
    runtime: Any, web: str, settings: Any
) -> None:
    open_event(runtime, registration_enabled=False)
    with db.transaction(runtime.sessions) as session:
        from invites.services.imports import import_list

        event = session.scalars(select(Event)).one()
        import_list(session, event, b"email,naam\ninvitee@example.nl,Ida Invitee\n", "l.csv", NOW)
    [original] = invitations(runtime)
    token = make_token(settings.secret_key, original.public_id, original.token_version)
    with httpx.Client(base_url=web) as client:
        page = client.get(f"/r/{token}").text
        assert "Meld u dan zelf aan" not in page
        refused = client.post(f"/e/{SLUG}/register", data=form(via=token))
        assert refused.status_code == 400 and "doorgestuurde uitnodiging" in refused.text
        with db.transaction(runtime.sessions) as session:
            session.execute(update(Event).values(extra={"registration": {"allow_forwarded": True}}))
        page = client.get(f"/r/{token}").text
        link = re.search(r'href="(/e/[^"]+/register\?via=[^"]+)"', page)
        assert link is not None
        assert 'value="' + token + '"' in client.get(link.group(1)).text
        accepted = client.post(f"/e/{SLUG}/register", data=form(via=token))
        assert accepted.status_code == 200
    original_after, colleague = invitations(runtime)
    assert original_after.answer is None, "the invitee's own invitation is untouched"
    assert colleague.referred_by_id == original.id and colleague.pending


def test_registrations_are_rate_limited(runtime: Any, web: str) -> None:
    open_event(runtime)
    with httpx.Client(base_url=web) as client:
        codes = [
            client.post(f"/e/{SLUG}/register", data=form(email=f"p{i}@example.nl")).status_code
            for i in range(11)
        ]
    assert codes == [200] * 10 + [429]
