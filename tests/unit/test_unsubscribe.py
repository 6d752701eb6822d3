"""Unsubscribe tokens, and the use case that puts an address on the suppression list."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from invites import db
from invites.db.models import Base, Invitation, Recipient, Suppression
from invites.domain.errors import NotFound
from invites.domain.eventfile import parse_event_file
from invites.domain.tokens import make_token, unsubscribe_token
from invites.services.events import load_event
from invites.services.unsubscribe import find_subscriber, unsubscribe
from tests.conftest import EVENT_FILE

NOW = datetime(2018, 1, 15, 9, 0, tzinfo=UTC)
SECRET = "test-secret"


def test_token_is_stable_and_differs_from_the_rsvp_token() -> None:
    token = unsubscribe_token(SECRET, "abc")
    assert token == unsubscribe_token(SECRET, "abc")
    assert token.startswith("abc.")
    assert token != make_token(SECRET, "abc", 1)
    assert token != unsubscribe_token("other-secret", "abc")
    assert token != unsubscribe_token(SECRET, "abd")


@pytest.fixture
def session() -> Iterator[Session]:
    engine = db.make_engine("sqlite://")
    Base.metadata.create_all(engine)
    with db.session_factory(engine)() as session:
        event = load_event(session, parse_event_file(EVENT_FILE.read_bytes(), "example"), NOW).event
        person = Recipient(
            email="Zoe@Example.org",
            email_key="zoe@example.org",
            language="nl",
            created_at=NOW,
            updated_at=NOW,
        )
        session.add(person)
        session.flush()
        session.add(
            Invitation(
                event_id=event.id, recipient_id=person.id, public_id="pid", token_version=3, created_at=NOW
            )
        )
        session.commit()
        yield session
    engine.dispose()


def suppressed(session: Session) -> list[tuple[str, str]]:
    return [tuple(row) for row in session.execute(select(Suppression.email_key, Suppression.reason))]  # type: ignore[misc]


def test_unsubscribe_suppresses_the_address_once(session: Session) -> None:
    token = unsubscribe_token(SECRET, "pid")
    assert not find_subscriber(session, SECRET, token).unsubscribed
    done = unsubscribe(session, SECRET, token, NOW)
    assert done.unsubscribed and done.recipient.email_key == "zoe@example.org"
    assert suppressed(session) == [("zoe@example.org", "unsubscribed")]
    unsubscribe(session, SECRET, token, NOW)
    assert suppressed(session) == [("zoe@example.org", "unsubscribed")]
    assert find_subscriber(session, SECRET, token).unsubscribed


@pytest.mark.parametrize(
    "token",
    [
        "pid.forged",
        "nobody." + unsubscribe_token(SECRET, "pid").split(".")[1],
        "",
        "pid",
        make_token(SECRET, "pid", 3),
    ],
)
def test_a_wrong_token_changes_nothing(session: Session, token: str) -> None:
    with pytest.raises(NotFound):
        unsubscribe(session, SECRET, token, NOW)
    assert suppressed(session) == []
