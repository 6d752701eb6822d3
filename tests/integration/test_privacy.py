"""Export, erasure and the retention purge (AVG/GDPR) on SQLite and PostgreSQL: after an erasure or a purge
no table holds the person's address, name or anything they typed, and the counts stay right."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from invites import db
from invites.db.models import AuditLog, Base, Event, Invitation, OutboundMessage, Recipient
from invites.domain.eventfile import parse_event_file
from invites.domain.states import Answer, AnswerSource, MessageStatus
from invites.readmodels.status import event_status
from invites.services import campaigns
from invites.services.events import get_event, load_event
from invites.services.imports import import_list
from invites.services.privacy import export_person, forget_person, purge_expired
from invites.services.rsvp import log_open, record_answer
from invites.services.suppression import suppress
from tests.conftest import EVENT_FILE, NOW, run_cli

SLUG = "lokaal-samenspel-2018"
ADDRESS = "Wilma.Ongeschreven@utrecht.example.nl"
AGENT = "Mozilla/5.0 (wilma-laptop) invites-test/1.0"
# Everything personal the tests plant: none of it may survive an erasure, in any table.
TRACES = [
    "wilma.ongeschreven",
    "Ongeschreven",
    "Wilma",
    "wilma-laptop",
    "notenallergie",
    "tafel bij het raam",
]
AUDIENCE = (
    "e-mail,voornaam,achternaam,functie,gemeente,Dieet\n"
    f"{ADDRESS},Wilma,Ongeschreven,wethouder,Utrecht,notenallergie\n"
    "piet.de.vries@example.org,Piet,de Vries,burgemeester,De Bilt,\n"
    "anna.jansen@example.com,Anna,Jansen,raadslid,Zeist,\n"
)


def setup_person(runtime: Any, settings: Any) -> None:
    """The example event; three invitees; one of them answered, opened her page, got a message, and
    unsubscribed."""
    with db.transaction(runtime.sessions) as session:
        event = load_event(session, parse_event_file(EVENT_FILE.read_bytes(), str(EVENT_FILE)), NOW).event
        assert import_list(session, event, AUDIENCE.encode(), "lijst.csv", NOW).accepted == 3
    campaigns.start_campaign(runtime.sessions, SLUG, "invitation", settings, runtime.templates, NOW)
    with db.transaction(runtime.sessions) as session:
        invitation = wilma(session)
        record_answer(
            session,
            invitation,
            Answer.ACCEPTED,
            AnswerSource.WEB,
            NOW,
            AGENT,
        )
        # What the event's own questions would have stored.
        invitation.responses = {"remark": "tafel bij het raam"}
        log_open(session, invitation, AGENT, NOW)
        session.execute(
            update(OutboundMessage)
            .where(OutboundMessage.invitation_id == invitation.id)
            .values(
                status=MessageStatus.SENT,
                sent_at=NOW + timedelta(seconds=3),
                last_reply=f"250 2.0.0 <{ADDRESS.lower()}> queued",
            )
        )
        suppress(session, ADDRESS, "unsubscribed", NOW)


def wilma(session: Session) -> Invitation:
    return session.scalars(
        select(Invitation).join(Recipient).where(Recipient.email_key == ADDRESS.casefold())
    ).one()


def traces_left(session: Session) -> list[str]:
    """Every planted trace found in any column of any table, as 'table.column: trace'."""
    found = []
    for table in Base.metadata.sorted_tables:
        for row in session.execute(select(table)).mappings():
            for column, value in row.items():
                text = json.dumps(value, default=str, ensure_ascii=False).casefold()
                found += [f"{table.name}.{column}: {t}" for t in TRACES if t.casefold() in text]
    return found


def test_export_holds_everything_about_the_person_and_is_audited(runtime: Any, settings: Any) -> None:
    setup_person(runtime, settings)
    with db.transaction(runtime.sessions) as session:
        data = export_person(session, ADDRESS.upper(), NOW, "privacy-officer")
    assert data["recipient"]["email"] == ADDRESS
    assert data["recipient"]["attributes"] == {"Dieet": "notenallergie"}
    [invitation] = data["invitations"]
    assert invitation["event"]["slug"] == SLUG
    assert invitation["answer"] == "accepted"
    assert invitation["responses"] == {"remark": "tafel bij het raam"}
    assert [h["user_agent"] for h in invitation["history"]] == [AGENT]
    assert [v["user_agent"] for v in invitation["page_views"]] == [AGENT]
    [message] = data["messages"]
    assert message["to_address"] == ADDRESS and message["status"] == "sent"
    assert [s["reason"] for s in data["suppression"]] == ["unsubscribed"]
    json.dumps(data)  # JSON as it is
    with runtime.sessions() as session:
        [entry] = session.scalars(select(AuditLog)).all()
        assert (entry.action, entry.actor, entry.at) == ("export", "privacy-officer", NOW)
        assert entry.subject_key.startswith("erased:") and "wilma" not in entry.subject_key.casefold()
        assert entry.detail == {"found": True, "invitations": 1, "messages": 1}


def test_forget_leaves_no_personal_data_and_keeps_the_counts(runtime: Any, settings: Any) -> None:
    setup_person(runtime, settings)
    with runtime.sessions() as session:
        before = event_status(session, get_event(session, SLUG))
        assert traces_left(session)

    with db.transaction(runtime.sessions) as session:
        erased = forget_person(session, ADDRESS, NOW, "privacy-officer")
    assert (erased.found, erased.invitations, erased.messages) == (True, 1, 1)

    with runtime.sessions() as session:
        assert traces_left(session) == []
        after = event_status(session, get_event(session, SLUG))
        assert {k: after[k] for k in ("invited", "sent", "accepted")} == {
            k: before[k] for k in ("invited", "sent", "accepted")
        }
        assert [e.action for e in session.scalars(select(AuditLog))] == ["forget"]
        # The others are untouched.
        assert session.scalar(
            select(Recipient.display_name).where(Recipient.email_key == "anna.jansen@example.com")
        )

    # Never invited again: a new import of the same list counts her as suppressed and stores nobody new.
    with db.transaction(runtime.sessions) as session:
        event = get_event(session, SLUG)
        report = import_list(session, event, AUDIENCE.encode(), "lijst.csv", NOW + timedelta(days=1))
        assert (report.suppressed, report.accepted) == (1, 0)
    with runtime.sessions() as session:
        assert traces_left(session) == []


def test_the_cli_exports_and_forgets(runtime: Any, settings: Any) -> None:
    setup_person(runtime, settings)
    exported = json.loads(run_cli(settings, "person", "export", ADDRESS, "--by", "dpo").stdout)
    assert exported["recipient"]["last_name"] == "Ongeschreven"
    result = run_cli(settings, "person", "forget", ADDRESS, "--by", "dpo")
    assert "erased (1 invitations, 1 messages)" in result.stdout
    assert json.loads(run_cli(settings, "person", "export", ADDRESS).stdout)["recipient"] is None
    with runtime.sessions() as session:
        assert traces_left(session) == []
        assert [e.action for e in session.scalars(select(AuditLog).order_by(AuditLog.id))] == [
            "export",
            "forget",
            "export",
        ]


def test_retention_purges_personal_data_days_after_the_event(runtime: Any, settings: Any) -> None:
    setup_person(runtime, settings)
    with runtime.sessions() as session:
        ends_at = session.scalars(select(Event.ends_at)).one()
    with db.transaction(runtime.sessions) as session:
        assert purge_expired(session, ends_at + timedelta(days=30), 365) == 0
        assert purge_expired(session, ends_at + timedelta(days=400), 0) == 0  # 0: retention off
    with runtime.sessions() as session:
        assert traces_left(session)

    at = (ends_at + timedelta(days=366)).isoformat()
    assert (
        "3 recipients purged" in run_cli(settings, "retention", "purge", "--at", at, "--days", "365").stdout
    )
    with runtime.sessions() as session:
        # The suppression of her address stays, as an objection must be honoured; nothing else is left.
        assert [t for t in traces_left(session) if not t.startswith("suppression.")] == []
        assert (
            session.scalar(select(Invitation.answer).where(Invitation.answer.is_not(None))) == Answer.ACCEPTED
        )
        [entry] = session.scalars(select(AuditLog)).all()
        assert (entry.action, entry.detail) == ("retention-purge", {"recipients": 3, "days": 365})
    with db.transaction(runtime.sessions) as session:
        assert purge_expired(session, ends_at + timedelta(days=500), 365) == 0
