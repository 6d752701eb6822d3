"""Reminders, updates and cancellations against real databases and a real SMTP sink, with the clock as a
parameter: every rule kind, quiet hours, the DST boundary, catch-up after downtime, concurrent sweeps, and
the calendars of an update and a cancellation parsed back."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from email.policy import default
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from icalendar import Calendar
from sqlalchemy import select, update

from invites import db
from invites.adapters.mailer import SmtpMailer
from invites.adapters.sink import stored_messages
from invites.db.models import Event, Invitation, OutboundMessage, Recipient, ReminderRule
from invites.domain import rules
from invites.domain.errors import InputError
from invites.domain.eventfile import parse_event_file
from invites.domain.states import Answer, EventStatus, MessageStatus
from invites.domain.tokens import make_token
from invites.services import campaigns, reminders
from invites.services.cancellation import cancel_event
from invites.services.delivery import deliver_batch
from invites.services.events import get_event, load_event
from invites.services.imports import import_list
from invites.services.suppression import suppress
from tests.conftest import EVENT_FILE, NOW, run_cli, sign_in

SLUG = "lokaal-samenspel-2018"
AMS = ZoneInfo("Europe/Amsterdam")
ANSWERS: dict[str, Answer | None] = {
    "nog.niet@example.org": None,
    "komt@example.org": Answer.ACCEPTED,
    "misschien@example.nl": Answer.TENTATIVE,
    "niet@example.com": Answer.DECLINED,
    "wacht@example.org": Answer.ACCEPTED,  # on the waiting list
    "aangemeld@example.org": Answer.ACCEPTED,  # a registration still waiting for its opt-in
    "afgemeld@example.org": None,  # unsubscribed after the invitation
    "burgemeester@example.nl": None,
}
LATE = "later@example.org"  # invited, but never sent the invitation


def ams(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=AMS)  # type: ignore[misc]


@dataclass
class World:
    runtime: Any
    outbox: Path

    @property
    def settings(self) -> Any:
        return self.runtime.settings

    def sweep(self, now: datetime) -> list[int]:
        handed: list[list[int]] = []
        reminders.sweep_reminders(self.runtime.sessions, handed.append, now, self.settings)
        return [i for batch in handed for i in batch]

    def due(self, now: datetime) -> list[tuple[str, str]]:
        with self.runtime.sessions() as session:
            return sorted((d.rule, d.email) for d in reminders.due_reminders(session, now, self.settings))

    def deliver(self, ids: list[int], now: datetime) -> None:
        mailer = SmtpMailer(self.settings.smtp)
        result = deliver_batch(
            self.runtime.sessions, ids, mailer, self.settings, self.runtime.templates, lambda: now
        )
        assert result.sent == result.claimed == len(ids), result

    def send(self, kind: str, now: datetime) -> campaigns.StartedCampaign:
        started = campaigns.start_campaign(
            self.runtime.sessions, SLUG, kind, self.settings, self.runtime.templates, now
        )
        handed: list[list[int]] = []
        campaigns.enqueue_queued(self.runtime.sessions, started.scope, handed.append, 100)
        self.deliver([i for batch in handed for i in batch], now)
        return started

    def rule(self, name: str, when: str, audience: str | list[str], **segment: Any) -> None:
        with db.transaction(self.runtime.sessions) as session:
            event = get_event(session, SLUG)
            spec = rules.RuleSpec.parse(name, when, audience, segment=segment, zone=AMS)
            reminders.save_rule(session, event, spec, NOW)

    def rows(self, kind: str | None = None) -> list[OutboundMessage]:
        with self.runtime.sessions() as session:
            query = select(OutboundMessage).order_by(OutboundMessage.id)
            if kind:
                query = query.where(OutboundMessage.kind == kind)
            return list(session.scalars(query))

    def messages(self, to: str | None = None) -> list[Message]:
        found = [message_from_bytes(p.read_bytes(), policy=default) for p in stored_messages(self.outbox)]
        return [m for m in found if to is None or m["To"].addresses[0].addr_spec == to]


def load(runtime: Any, data: bytes, now: datetime = NOW) -> Event:
    with db.transaction(runtime.sessions) as session:
        return load_event(session, parse_event_file(data, "event.toml"), now).event


@pytest.fixture
def world(runtime: Any, tmp_path: Path) -> World:
    """The example event, invitations sent to eight people who then answered in every way there is."""
    csv = "e-mail,naam,functie\n" + "".join(
        f"{a},Persoon {i},{'burgemeester' if a.startswith('burgemeester') else 'raadslid'}\n"
        for i, a in enumerate(ANSWERS)
    )
    with db.transaction(runtime.sessions) as session:
        event = load_event(session, parse_event_file(EVENT_FILE.read_bytes()), NOW).event
        import_list(session, event, csv.encode(), "people.csv", NOW)
    made = World(runtime, tmp_path / "var" / "outbox")
    made.send("invitation", NOW)
    with db.transaction(runtime.sessions) as session:
        event = get_event(session, SLUG)
        import_list(session, event, f"e-mail\n{LATE}\n".encode(), "late.csv", NOW)
        for invitation, recipient in session.execute(
            select(Invitation, Recipient).join(Recipient).where(Invitation.event_id == event.id)
        ):
            invitation.answer = ANSWERS.get(recipient.email)
            invitation.waitlist_position = 1 if recipient.email.startswith("wacht") else None
            invitation.pending = recipient.email.startswith("aangemeld")
        suppress(session, "afgemeld@example.org", "unsubscribed", NOW)
    return made


def test_the_default_rules_remind_non_responders_and_who_is_coming(world: World) -> None:
    with world.runtime.sessions() as session:
        rules = reminders.event_rules(session, get_event(session, SLUG))
        assert [(r.name, r.offset, r.audience) for r in rules] == [
            ("no-answer-7d", "-7d 10:00", "no-answer"),
            ("practical-1d", "-1d 10:00", "accepted,tentative"),
        ]
    # Not the never-invited, the pending registration, the unsubscribed, the decliner or the waiting list.
    no_answer = [("no-answer-7d", "burgemeester@example.nl"), ("no-answer-7d", "nog.niet@example.org")]
    assert world.due(ams(2018, 2, 6, 9, 59)) == []
    assert world.due(ams(2018, 2, 6, 10, 0)) == no_answer
    ids = world.sweep(ams(2018, 2, 6, 10, 0))
    assert len(ids) == 2
    world.deliver(ids, ams(2018, 2, 6, 10, 0))
    assert world.due(ams(2018, 2, 12, 10, 0)) == [
        ("practical-1d", "komt@example.org"),
        ("practical-1d", "misschien@example.nl"),
    ]
    world.deliver(world.sweep(ams(2018, 2, 12, 10, 0)), ams(2018, 2, 12, 10, 0))
    assert world.sweep(ams(2018, 2, 12, 10, 1)) == [], "each (rule, invitation) once"

    rows = world.rows("reminder")
    assert Counter(r.to_address for r in rows) == Counter(
        ["burgemeester@example.nl", "nog.niet@example.org", "komt@example.org", "misschien@example.nl"]
    )
    assert all(r.status == MessageStatus.SENT for r in rows)
    assert all(r.idempotency_key == f"reminder:{r.reminder_rule_id}:{r.invitation_id}" for r in rows)
    coming = world.messages("komt@example.org")[-1]
    assert coming["Subject"].startswith("Herinnering:")
    text = coming.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Fijn dat u komt" in text and "Fort Vreeswijk" in text and "PROGRAMMA" in text
    maybe = world.messages("misschien@example.nl")[-1].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "misschien komt" in maybe
    silent = world.messages("nog.niet@example.org")[-1].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "nog niet ontvangen" in silent


def test_every_rule_kind_and_audience(world: World) -> None:
    world.rule("wachtlijst", "2018-02-09T11:00", "waitlist")
    world.rule("iedereen", "-2h", "invited")
    world.rule("burgemeesters", "-3d", ["no-answer", "accepted"], roles=["burgemeester"])
    world.rule("accepted-only", "-5d 12:00", "accepted")
    assert world.due(ams(2018, 2, 9, 10, 59)) == [
        ("accepted-only", "komt@example.org"),
        ("no-answer-7d", "burgemeester@example.nl"),
        ("no-answer-7d", "nog.niet@example.org"),
    ]
    world.sweep(ams(2018, 2, 9, 10, 59))
    assert world.due(ams(2018, 2, 9, 11, 0)) == [("wachtlijst", "wacht@example.org")]
    world.sweep(ams(2018, 2, 9, 11, 0))
    # -3d: the start's own time of day, three days before.
    assert world.due(ams(2018, 2, 10, 19, 29)) == []
    assert world.due(ams(2018, 2, 10, 19, 30)) == [("burgemeesters", "burgemeester@example.nl")]
    world.sweep(ams(2018, 2, 10, 19, 30))
    world.sweep(ams(2018, 2, 12, 10, 0))
    # -2h to everyone invited who knows of the event: the decliner and the waiting list too.
    assert world.due(ams(2018, 2, 13, 17, 30)) == [
        ("iedereen", "burgemeester@example.nl"),
        ("iedereen", "komt@example.org"),
        ("iedereen", "misschien@example.nl"),
        ("iedereen", "niet@example.com"),
        ("iedereen", "nog.niet@example.org"),
        ("iedereen", "wacht@example.org"),
    ]


def test_quiet_hours_hold_a_reminder_until_the_morning(world: World) -> None:
    world.rule("nacht", "-1d 03:00", "accepted")
    world.rule("avond", "-3d 21:30", "tentative")
    assert world.due(ams(2018, 2, 12, 3, 0)) == []
    assert world.due(ams(2018, 2, 12, 7, 59)) == []
    assert ("nacht", "komt@example.org") in world.due(ams(2018, 2, 12, 8, 0))
    assert world.sweep(ams(2018, 2, 10, 21, 30)) == []
    assert world.sweep(ams(2018, 2, 11, 7, 0)) == []
    assert [d for d in world.due(ams(2018, 2, 11, 8, 0)) if d[0] == "avond"] == [
        ("avond", "misschien@example.nl")
    ]


def test_a_change_of_the_clocks_keeps_the_reminder_on_local_time(world: World) -> None:
    moved = EVENT_FILE.read_bytes().replace(b"date = 2018-02-13", b"date = 2018-03-26")
    load(world.runtime, moved)
    # Sunday 25 March 2018, the day the clocks go forward: 10:00 CEST is 08:00 UTC.
    assert not [d for d in world.due(datetime(2018, 3, 25, 7, 59, tzinfo=UTC)) if d[0] == "practical-1d"]
    due = world.due(datetime(2018, 3, 25, 8, 0, tzinfo=UTC))
    assert ("practical-1d", "komt@example.org") in due
    # A week earlier it was still winter time: 10:00 CET is 09:00 UTC.
    assert world.due(datetime(2018, 3, 19, 8, 59, tzinfo=UTC)) == []
    assert world.due(datetime(2018, 3, 19, 9, 0, tzinfo=UTC))


def test_missed_runs_catch_up_after_downtime_unless_too_late(world: World, runtime: Any) -> None:
    # Nobody swept from 6 February: on 10 February the week-before reminder still goes out, once.
    assert len(world.sweep(ams(2018, 2, 10, 14, 0))) == 2
    assert world.sweep(ams(2018, 2, 10, 14, 1)) == []
    # Back at 02:00 on the day of the meeting: held until 08:00, then caught up.
    assert world.sweep(ams(2018, 2, 13, 2, 0)) == []
    assert len(world.sweep(ams(2018, 2, 13, 8, 0))) == 2
    # Once the event has started, nothing more.
    world.rule("te-laat", "-1h", "invited")
    assert world.sweep(ams(2018, 2, 13, 19, 30)) == []
    # With a maximum lateness, a rule whose window closed sends nothing either.
    world.runtime.settings = runtime.settings.model_copy(update={"reminder_max_late_hours": 24})
    world.rule("kort", "-6d 10:00", "no-answer")
    assert world.due(ams(2018, 2, 8, 10, 0)) == []
    assert world.due(ams(2018, 2, 8, 9, 59)) == [
        ("kort", "burgemeester@example.nl"),
        ("kort", "nog.niet@example.org"),
    ]


def test_concurrent_sweeps_write_each_reminder_once(world: World) -> None:
    with db.transaction(world.runtime.sessions) as session:
        event = get_event(session, SLUG)
        people = "".join(f"extra.{i}@example.org\n" for i in range(60))
        import_list(session, event, f"e-mail\n{people}".encode(), "extra.csv", NOW)
        session.flush()
        for invitation in session.scalars(select(Invitation).where(Invitation.answer.is_(None))):
            invitation.answer = Answer.ACCEPTED
    moment = ams(2018, 2, 12, 10, 0)
    expected = len(world.due(moment))
    assert expected == 65, "the 60 new ones, and the 5 earlier ones without an answer or who came"
    barrier = threading.Barrier(4)
    handed: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def sweep() -> None:
        try:
            barrier.wait(10)
            ids = world.sweep(moment)
            with lock:
                handed.extend(ids)
        except BaseException as exc:  # reported below, in the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    rows = world.rows("reminder")
    assert len(rows) == expected
    assert sorted(handed) == sorted(r.id for r in rows), "each new row enqueued by exactly one sweep"
    assert len({(r.reminder_rule_id, r.invitation_id) for r in rows}) == expected


def vevent(message: Message) -> tuple[str, Any]:
    part = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
    calendar = Calendar.from_ical(part.get_payload(decode=True))
    return str(calendar["METHOD"]), next(iter(calendar.walk("VEVENT")))


def test_an_update_moves_the_meeting_and_later_reminders_use_the_new_time(world: World) -> None:
    _, first = vevent(world.messages("komt@example.org")[0])
    moved = EVENT_FILE.read_bytes().replace(b'start = "19:30"', b'start = "19:45"', 1)
    moved = moved.replace(b'name = "Fort Vreeswijk"', b'name = "Stadshuis Nieuwegein"')
    event = load(world.runtime, moved, NOW + timedelta(days=1))
    assert event.sequence == 1 and event.changed_fields == ["starts_at", "venue_name"]

    with pytest.raises(InputError, match="invites event cancel"):
        world.send("cancellation", NOW + timedelta(days=1))
    started = world.send("update", NOW + timedelta(days=1))
    # Everyone who has the meeting in their calendar and did not decline.
    assert sorted(r.to_address for r in world.rows("update")) == sorted(
        a
        for a, answer in ANSWERS.items()
        if answer != Answer.DECLINED and not a.startswith("afgemeld") and not a.startswith("aangemeld")
    )
    assert started.sequence == 1
    update = world.messages("komt@example.org")[-1]
    assert update["Subject"].startswith("Gewijzigd: tijd en locatie")
    method, moved_event = vevent(update)
    assert method == "REQUEST"
    assert str(moved_event["UID"]) == str(first["UID"])
    assert moved_event["SEQUENCE"] > first["SEQUENCE"]
    assert moved_event["DTSTART"].dt == ams(2018, 2, 13, 19, 45)

    # The next change announces only itself: the earlier ones went out with the update.
    again = moved.replace(b'end = "22:00"', b'end = "22:15"', 1)
    assert load(world.runtime, again, NOW + timedelta(days=2)).changed_fields == ["ends_at"]

    # The day-before reminder carries the new time.
    world.deliver(world.sweep(ams(2018, 2, 12, 10, 0)), ams(2018, 2, 12, 10, 0))
    _, reminded = vevent(world.messages("komt@example.org")[-1])
    assert reminded["DTSTART"].dt == ams(2018, 2, 13, 19, 45)
    assert reminded["SEQUENCE"] == 2


def test_a_cancellation_removes_the_meeting_everywhere_and_stops_every_reminder(
    world: World, web: str
) -> None:
    queued = world.sweep(ams(2018, 2, 6, 10, 0))
    assert len(queued) == 2, "two reminders waiting in the queue when the event is cancelled"
    with db.transaction(world.runtime.sessions) as session:
        stuck = session.get_one(OutboundMessage, queued[0])
        stuck.status, stuck.lease_until = MessageStatus.SENDING, ams(2018, 2, 6, 10, 5)
    handed: list[list[int]] = []
    result = cancel_event(
        world.runtime.sessions,
        SLUG,
        "De spreker is ziek.",
        world.settings,
        world.runtime.templates,
        handed.append,
        ams(2018, 2, 6, 11, 0),
    )
    assert result.stopped == 2
    assert {r.status for r in world.rows("reminder")} == {MessageStatus.CANCELLED}
    with world.runtime.sessions() as session:
        event = get_event(session, SLUG)
        assert (event.status, event.cancel_reason, event.sequence) == (
            EventStatus.CANCELLED,
            "De spreker is ziek.",
            1,
        )
    # Everyone who was sent the meeting, decliners included; not who never got it, nor the unsubscribed.
    cancelled_to = sorted(r.to_address for r in world.rows("cancellation"))
    assert cancelled_to == sorted(a for a in ANSWERS if not a.startswith(("afgemeld", "aangemeld")))
    world.deliver([i for batch in handed for i in batch], ams(2018, 2, 6, 11, 0))

    _, invited = vevent(world.messages("niet@example.com")[0])
    cancellation = world.messages("niet@example.com")[-1]
    assert cancellation["Subject"].startswith("Afgelast:")
    assert "De spreker is ziek." in cancellation.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    method, dropped = vevent(cancellation)
    assert method == "CANCEL" and str(dropped["STATUS"]) == "CANCELLED"
    assert str(dropped["UID"]) == str(invited["UID"])
    assert dropped["SEQUENCE"] == invited["SEQUENCE"] + 1

    # No reminder from here on, and cancelling again sends nobody a second cancellation.
    assert world.sweep(ams(2018, 2, 12, 10, 0)) == []
    again = cancel_event(
        world.runtime.sessions, SLUG, "", world.settings, world.runtime.templates, handed.append, NOW
    )
    assert again.campaign.new_rows == 0
    with world.runtime.sessions() as session:
        assert get_event(session, SLUG).sequence == 1
        invitation = session.scalars(
            select(Invitation).join(Recipient).where(Recipient.email == "komt@example.org")
        ).one()
        token = make_token(world.settings.secret_key, invitation.public_id, invitation.token_version)
    with httpx.Client(base_url=web) as client:
        page = client.get(f"/r/{token}")
    assert page.status_code == 200
    assert "Deze bijeenkomst gaat niet door." in page.text and "De spreker is ziek." in page.text


def test_the_api_adds_changes_lists_and_deletes_rules(world: World, web: str, organiser: Any) -> None:
    with httpx.Client(base_url=f"{web}/api/v1/events/{SLUG}", headers=organiser.headers) as client:
        made = client.post(
            "/reminders",
            json={"name": "route", "when": "-2d 09:00", "audience": ["accepted"], "segment": {"tags": ["x"]}},
        )
        assert made.status_code == 200, made.text
        assert made.json()["when"] == "-2d 09:00" and made.json()["scheduled_at"].startswith(
            "2018-02-11T09:00"
        )
        changed = client.post(
            "/reminders", json={"name": "route", "when": "-2d 10:00", "audience": "waitlist"}
        )
        assert changed.json()["audience"] == ["waitlist"]
        listed = client.get("/reminders").json()["rules"]
        assert [r["name"] for r in listed] == ["no-answer-7d", "practical-1d", "route"]
        assert listed[2]["when"] == "-2d 10:00" and listed[2]["state"] == "passed"
        wrong = client.post("/reminders", json={"name": "x", "when": "morgen", "audience": "invited"})
        assert wrong.status_code == 400 and wrong.json()["detail"].startswith("field 'when': 'morgen'")
        assert client.delete("/reminders/route").status_code == 204
        assert client.delete("/reminders/route").status_code == 404
        assert client.get("/api/v1/events/nope/reminders", params={}).status_code == 404


def test_loading_the_file_again_updates_rules_by_name(world: World) -> None:
    rules = b"""
[[reminders]]
name = "practical-1d"
when = "-1d 09:00"
audience = ["accepted", "tentative"]

[[reminders]]
name = "wachtlijst"
when = "-2d 10:00"
audience = "waitlist"
enabled = false
"""
    load(world.runtime, EVENT_FILE.read_bytes() + rules)
    with world.runtime.sessions() as session:
        found = session.scalars(select(ReminderRule).order_by(ReminderRule.id)).all()
        assert [(r.name, r.offset, r.enabled) for r in found] == [
            ("no-answer-7d", "-7d 10:00", True),
            ("practical-1d", "-1d 09:00", True),
            ("wachtlijst", "-2d 10:00", False),
        ]
    assert world.due(ams(2018, 2, 11, 10, 0)) == [
        ("no-answer-7d", "burgemeester@example.nl"),
        ("no-answer-7d", "nog.niet@example.org"),
    ]


def test_a_series_names_its_predecessor_and_reaches_who_came(world: World) -> None:
    # The first meeting's attendees: komt@ (accepted) and misschien@ (tentative does not count).
    second = (
        EVENT_FILE.read_bytes()
        .replace(b'slug = "lokaal-samenspel-2018"', b'slug = "lokaal-samenspel-2018-2"')
        .replace(b"date = 2018-02-13", b"date = 2018-04-10")
        .replace(b"previous = {", b'predecessor = "lokaal-samenspel-2018"\nignored = {')
    )
    event = load(world.runtime, second)
    assert event.predecessor_id is not None
    assert event.extra["previous_meeting"] == {
        "date": "2018-02-13",
        "title": "Inspiratiebijeenkomst Lokaal samenspel in verandering",
    }
    csv = "e-mail\nkomt@example.org\nmisschien@example.nl\nnieuw@example.org\n"
    with db.transaction(world.runtime.sessions) as session:
        import_list(session, get_event(session, "lokaal-samenspel-2018-2"), csv.encode(), "b.csv", NOW)
    started = campaigns.start_campaign(
        world.runtime.sessions,
        "lokaal-samenspel-2018-2",
        "invitation",
        world.settings,
        world.runtime.templates,
        NOW,
        campaigns.Segment(attended_previous=True),
    )
    assert started.total == 1
    with world.runtime.sessions() as session:
        assert session.scalars(
            select(OutboundMessage.to_address).where(OutboundMessage.campaign_id == started.campaign_id)
        ).all() == ["komt@example.org"]
    bad = second.replace(b'predecessor = "lokaal-samenspel-2018"', b'predecessor = "nope"')
    with pytest.raises(InputError, match=r"series\.predecessor"):
        load(world.runtime, bad)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_commands_list_run_and_cancel_as_of_a_moment(world: World) -> None:
    import json

    listed = run_cli(world.settings, "reminders", "due", SLUG, "--at", "2018-02-06T10:00", "--json")
    report = json.loads(listed.stdout)
    assert [r["state"] for r in report["rules"]] == ["due", "waiting"]
    assert sorted(d["email"] for d in report["due"]) == ["burgemeester@example.nl", "nog.niet@example.org"]
    assert report["due"][0]["scheduled_at"] == "2018-02-06T10:00:00+01:00"
    ran = run_cli(world.settings, "reminders", "run", "--at", "2018-02-06T10:00:00+01:00", "--json")
    assert json.loads(ran.stdout)["created"] == 2
    again = run_cli(world.settings, "reminders", "run", "--at", "2018-02-06T10:05", "--json")
    assert json.loads(again.stdout)["created"] == 0
    cancelled = run_cli(world.settings, "event", "cancel", SLUG, "--reason", "Zaal onbruikbaar.")
    assert "2 unsent messages stopped" in cancelled.stdout
    after = run_cli(world.settings, "reminders", "due", SLUG, "--at", "2018-02-12T10:00", "--json")
    assert json.loads(after.stdout)["due"] == []
    assert {r["state"] for r in json.loads(after.stdout)["rules"]} == {"cancelled"}


@pytest.mark.parametrize(
    ("when", "limit"),
    [
        ("-99999999999d", "more than 366 days before the start"),
        ("-8785h", "more than 366 days before the start"),
        ("0001-01-01T00:00", "not in the years 2000 to 2099"),
        ("9999-12-31T23:59", "not in the years 2000 to 2099"),
    ],
)
def test_the_api_refuses_a_rule_beyond_the_limits_and_stores_nothing(
    world: World, web: str, organiser: Any, when: str, limit: str
) -> None:
    with httpx.Client(base_url=f"{web}/api/v1/events/{SLUG}", headers=organiser.headers) as client:
        refused = client.post("/reminders", json={"name": "te-vroeg", "when": when, "audience": "invited"})
        changed = client.post(
            "/reminders", json={"name": "no-answer-7d", "when": when, "audience": "invited"}
        )
        listed = client.get("/reminders")
    assert refused.status_code == 422, refused.text
    [problem] = refused.json()["detail"]
    assert problem["loc"] == ["body", "when"] and limit in problem["msg"] and problem["input"] == when
    assert changed.status_code == 422, "a rule that exists is not changed either"
    assert listed.status_code == 200
    assert [(r["name"], r["when"], r["state"]) for r in listed.json()["rules"]] == [
        ("no-answer-7d", "-7d 10:00", "passed"),
        ("practical-1d", "-1d 10:00", "passed"),
    ]
    with world.runtime.sessions() as session:
        assert session.scalars(select(ReminderRule.name).order_by(ReminderRule.id)).all() == [
            "no-answer-7d",
            "practical-1d",
        ]


def store_bad_rules(world: World) -> tuple[str, int, int]:
    """What an older version could store: an offset past what datetime can count, on a second event, and a
    rule of the example event whose template is not a reminder's. Written straight into the database."""
    second = (
        EVENT_FILE.read_bytes()
        .replace(b'slug = "lokaal-samenspel-2018"', b'slug = "tweede-avond"')
        .replace(b"date = 2018-02-13", b"date = 2018-04-10")
    )
    other = load(world.runtime, second)
    with db.transaction(world.runtime.sessions) as session:
        bad = [
            ReminderRule(
                event_id=other.id,
                name="kapot",
                offset="-99999999999d",
                at=None,
                audience="invited",
                segment={},
                template="reminder",
                enabled=True,
                created_at=NOW,
            ),
            ReminderRule(
                event_id=get_event(session, SLUG).id,
                name="verkeerd-bericht",
                offset="-7d 10:00",
                at=None,
                audience="no-answer",
                segment={},
                template="cancellation",
                enabled=True,
                created_at=NOW,
            ),
        ]
        session.add_all(bad)
        session.flush()
        return other.slug, bad[0].id, bad[1].id


def test_a_bad_stored_rule_does_not_stop_the_other_rules_and_events(
    world: World, web: str, organiser: Any, caplog: pytest.LogCaptureFixture
) -> None:
    other, broken, wrong_kind = store_bad_rules(world)
    moment = ams(2018, 2, 6, 10, 0)
    with db.transaction(world.runtime.sessions) as session:
        # An error an earlier sweep kept on a rule that works now: this sweep clears it.
        session.execute(
            update(ReminderRule).where(ReminderRule.name == "practical-1d").values(last_error="earlier")
        )

    handed: list[list[int]] = []
    with caplog.at_level(logging.WARNING, logger="invites.services.reminders"):
        result = reminders.sweep_reminders(world.runtime.sessions, handed.append, moment, world.settings)

    # The example event's good rule still sends, to its two non-responders, once.
    assert result.created == 2 and sorted(r.to_address for r in world.rows("reminder")) == [
        "burgemeester@example.nl",
        "nog.niet@example.org",
    ]
    assert [i for batch in handed for i in batch] == [r.id for r in world.rows("reminder")]
    assert {(f.event, f.rule) for f in result.failed} == {(other, "kapot"), (SLUG, "verkeerd-bericht")}
    logged = [r.getMessage() for r in caplog.records]
    assert any("'kapot'" in line and f"'{other}'" in line and "366 days" in line for line in logged), logged
    assert any("'verkeerd-bericht'" in line and "cancellation" in line for line in logged), logged
    with world.runtime.sessions() as session:
        kept = {r.id: r for r in session.scalars(select(ReminderRule))}
        assert kept[broken].last_error.startswith("when: '-99999999999d' is more than 366 days")
        assert kept[wrong_kind].last_error.startswith("template: template 'cancellation' is not one of")
        assert kept[broken].last_error_at == moment
        assert all(not r.last_error for i, r in kept.items() if i not in (broken, wrong_kind))

    # The list and the page show the error instead of answering 500.
    with httpx.Client(base_url=web, headers=organiser.headers) as client:
        listed = client.get(f"/api/v1/events/{other}/reminders")
        page = client.get(f"/events/{other}/reminders")
        page_of_example = client.get(f"/events/{SLUG}/reminders")
    assert listed.status_code == 200, listed.text
    [shown] = [r for r in listed.json()["rules"] if r["name"] == "kapot"]
    assert shown["state"] == "error" and shown["scheduled_at"] is None
    assert "is more than 366 days before the start" in shown["error"] and shown["error_at"].startswith(
        "2018-02-06T10:00"
    )
    assert page.status_code == 200, page.text
    row = re.search(r'<tr class="rule-error" data-rule-error="kapot">(.*?)</tr>', page.text, re.DOTALL)
    assert row and "De herinneringsronde van 06-02-2018 10:00 kon deze regel niet gebruiken:" in row[1]
    assert "is more than 366 days before the start" in row[1]
    assert 'data-state="error">Kan niet worden gebruikt</td>' in page.text
    assert "Niet elke regel kan worden gebruikt" in page.text
    assert page_of_example.status_code == 200 and 'data-rule-error="verkeerd-bericht"' in page_of_example.text
    assert 'data-rule-error="no-answer-7d"' not in page_of_example.text

    # Saved again with a sound offset, the rule loses its error and the next sweep uses it.
    with httpx.Client(base_url=f"{web}/api/v1/events/{other}", headers=organiser.headers) as client:
        fixed = client.post("/reminders", json={"name": "kapot", "when": "-1d 10:00", "audience": "invited"})
    assert fixed.status_code == 200 and fixed.json()["error"] == "" and fixed.json()["state"] != "error"
    again = reminders.sweep_reminders(world.runtime.sessions, handed.append, moment, world.settings)
    assert [(f.event, f.rule) for f in again.failed] == [(SLUG, "verkeerd-bericht")]


def test_the_page_form_refuses_an_offset_beyond_the_limit(world: World, web: str, organiser: Any) -> None:
    with httpx.Client(base_url=web, timeout=30) as client:
        sign_in(client, organiser)
        page = client.get(f"/events/{SLUG}/reminders")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        refused = client.post(
            f"/events/{SLUG}/reminders",
            data={"csrf_token": token[1], "name": "te-vroeg", "when": "-400d", "audience": "invited"},
        )
    assert refused.status_code == 400
    assert "&#39;-400d&#39; is more than 366 days before the start" in refused.text
    assert 'id="rule-error"' in refused.text and 'value="-400d"' in refused.text
    with world.runtime.sessions() as session:
        assert "te-vroeg" not in session.scalars(select(ReminderRule.name)).all()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_run_command_goes_on_past_a_bad_rule(world: World) -> None:
    other, _, _ = store_bad_rules(world)
    ran = run_cli(world.settings, "reminders", "run", "--at", "2018-02-06T10:00", "--json")
    report = json.loads(ran.stdout)
    assert report["created"] == 2
    assert sorted((f["event"], f["rule"]) for f in report["failed"]) == [
        (SLUG, "verkeerd-bericht"),
        (other, "kapot"),
    ]
    listed = run_cli(world.settings, "reminders", "due", other, "--at", "2018-02-06T10:00", "--json")
    [rule] = [r for r in json.loads(listed.stdout)["rules"] if r["name"] == "kapot"]
    assert rule["state"] == "error" and "366 days" in rule["error"]


CRLF_ADDRESS = "griffie@example.nl\r\nBcc: iedereen@example.com"


def test_an_organiser_address_with_a_line_break_is_refused_by_the_api_and_the_form(
    runtime: Any, web: str, organiser: Any
) -> None:
    toml_address = CRLF_ADDRESS.replace("\r", "\\r").replace("\n", "\\n")
    event_file = EVENT_FILE.read_bytes().replace(
        b'email = "uitnodigingen@example.org"', f'email = "{toml_address}"'.encode()
    )
    assert event_file != EVENT_FILE.read_bytes()
    with httpx.Client(base_url=web, headers=organiser.headers, timeout=30) as client:
        by_api = client.post(
            "/api/v1/events", content=event_file, headers={"Content-Type": "application/toml"}
        )
    assert by_api.status_code == 400
    assert "field 'organiser.email': must be one address on one line" in by_api.json()["detail"]

    with httpx.Client(base_url=web, timeout=30) as client:
        sign_in(client, organiser)
        page = client.get("/events/new")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        by_form = client.post(
            "/events/new",
            data={
                "csrf_token": token[1],
                "source": "form",
                "title": "Raadsavond",
                "date": "2025-03-04",
                "start": "19:30",
                "end": "21:45",
                "organiser_email": CRLF_ADDRESS,
            },
        )
    assert by_form.status_code == 400
    assert "field &#39;organiser.email&#39;: must be one address on one line" in by_form.text
    with runtime.sessions() as session:
        assert session.scalars(select(Event.slug)).all() == []
