"""Calendar replies arriving at the inbound SMTP endpoint over real SMTP, recorded in real databases.

Only a reply whose sender is authenticated counts: by the Authentication-Results of the organisation's own
mail server (mx.example.org here), or by the endpoint's own DKIM check against a real DNS server (a stub
on loopback). Everything else that names an invitation is held for the organiser, counted nowhere.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from invites import db
from invites.adapters.sink import free_port
from invites.db.models import AnswerHistory, Event, HeldAnswer, Invitation, OutboundMessage, Recipient
from invites.domain.eventfile import parse_event_file
from invites.domain.mailauth import dns_lookup
from invites.domain.states import Answer, AnswerSource, HeldState
from invites.services.events import load_event
from invites.services.imports import import_list
from invites.services.replies import NOT_CONFIRMED, ReplyHandler
from invites.services.rsvp import record_answer
from tests.conftest import EVENT_FILE, NOW, wait_until
from tests.dns_stub import DnsStub, dns_stub
from tests.reply_samples import (
    apple,
    authentication_results,
    body_of,
    google,
    head_of,
    outlook,
    signing_key,
    with_from,
    with_headers,
)

OUR_SERVER = "mx.example.org"
Client = Callable[..., bytes]
CLIENTS: dict[str, tuple[Client, Answer]] = {
    "outlook": (outlook, Answer.ACCEPTED),
    "google": (google, Answer.DECLINED),
    "apple": (apple, Answer.TENTATIVE),
}


def ar(results: str, authserv_id: str = OUR_SERVER) -> str:
    return authentication_results(results, authserv_id)


TAMPERED_TO = {"outlook": Answer.DECLINED, "google": Answer.ACCEPTED, "apple": Answer.DECLINED}


def tampered(client: Client, uid: str, address: str) -> bytes:
    """A signed reply whose answer was changed after signing (to TAMPERED_TO): the body of that answer's."""
    signed = signing_key("example.nl").sign(client(uid, address))
    other = client(uid, address, partstat=TAMPERED_TO[client.__name__].value.upper())
    return head_of(signed) + b"\r\n\r\n" + body_of(other)


# Each way a reply may reach the organiser, and whether it counts over SMTP and over IMAP. The organiser's
# server adds its header on top; whatever lies below it came with the message, and anyone could write it.
CASES: dict[str, tuple[Callable[[Client, str, str], bytes], bool, bool]] = {
    "trusted-dmarc-pass": (
        lambda c, u, a: with_headers(
            c(u, a), ar("spf=pass smtp.mailfrom=example.nl; dmarc=pass header.from=example.nl")
        ),
        True,
        True,
    ),
    "trusted-dkim-pass": (
        lambda c, u, a: with_headers(c(u, a), ar("dkim=pass header.d=example.nl")),
        True,
        True,
    ),
    "missing": (lambda c, u, a: c(u, a), False, False),
    "dmarc-fail": (
        lambda c, u, a: with_headers(c(u, a), ar("dmarc=fail header.from=example.nl")),
        False,
        False,
    ),
    "untrusted-server": (
        lambda c, u, a: with_headers(c(u, a), ar("dmarc=pass header.from=example.nl", "mx.evil.example")),
        False,
        False,
    ),
    "forged-below-fail": (
        lambda c, u, a: with_headers(c(u, a), ar("dmarc=fail header.from=example.nl"), ar("dmarc=pass")),
        False,
        False,
    ),
    "forged-below-nothing": (
        lambda c, u, a: with_headers(c(u, a), ar("none"), ar("dmarc=pass header.from=example.nl")),
        False,
        False,
    ),
    # The endpoint checks DKIM itself; the IMAP door trusts only the server's header.
    "dkim-signed": (lambda c, u, a: signing_key("example.nl").sign(c(u, a)), True, False),
    "dkim-other-domain": (lambda c, u, a: signing_key("evil.example").sign(c(u, a)), False, False),
    "dkim-tampered": (tampered, False, False),
}


@dataclass(frozen=True)
class Sent:
    address: str
    data: bytes
    answer: Answer
    counts: bool


def matrix(uid: str, door: str) -> list[Sent]:
    """Every client's reply in every case, each from an invitee of its own (`client-case@example.nl`)."""
    sent = []
    for client_name, (client, _) in CLIENTS.items():
        for case, (build, over_smtp, over_imap) in CASES.items():
            address = f"{client_name}-{case}@example.nl"
            answer = TAMPERED_TO[client_name] if build is tampered else CLIENTS[client_name][1]
            sent.append(
                Sent(address, build(client, uid, address), answer, over_smtp if door == "smtp" else over_imap)
            )
    return sent


def invite(runtime: Any, addresses: list[str], **event_fields: Any) -> str:
    """The example event with these invitees (and these fields of the event set); returns its UID."""
    with db.transaction(runtime.sessions) as session:
        event = load_event(session, parse_event_file(EVENT_FILE.read_bytes()), NOW).event
        for name, value in event_fields.items():
            setattr(event, name, value)
        import_list(session, event, ("email\n" + "\n".join(addresses) + "\n").encode(), "l.csv", NOW)
        return event.ics_uid


def answers(runtime: Any) -> dict[str, Answer | None]:
    with runtime.sessions() as session:
        return dict(
            session.execute(
                select(Recipient.email_key, Invitation.answer).join(
                    Invitation, Invitation.recipient_id == Recipient.id
                )
            ).all()
        )


def held(runtime: Any) -> dict[str, HeldAnswer]:
    """The held replies still waiting for the organiser, by the invitee's address."""
    with runtime.sessions() as session:
        rows = session.execute(
            select(Recipient.email_key, HeldAnswer)
            .join(Invitation, Invitation.id == HeldAnswer.invitation_id)
            .join(Recipient, Recipient.id == Invitation.recipient_id)
            .where(HeldAnswer.state == HeldState.HELD)
        ).all()
        session.expunge_all()
        return dict(rows)


def assert_counted(runtime: Any, sent: list[Sent], door: str) -> None:
    """Every reply that counts set its invitee's answer, with how it was authenticated; every other one
    left the answer unset and is held with its answer, the door, and the evidence."""
    assert answers(runtime) == {s.address: s.answer if s.counts else None for s in sent}
    waiting = held(runtime)
    assert set(waiting) == {s.address for s in sent if not s.counts}
    for s in sent:
        if s.address in waiting:
            row = waiting[s.address]
            assert (row.answer, row.source, row.evidence["door"]) == (s.answer, AnswerSource.CALENDAR, door)
            assert row.reason.startswith("afzender niet geverifieerd: "), row.reason
    with runtime.sessions() as session:
        history = session.scalars(select(AnswerHistory)).all()
    assert {h.source for h in history} == {AnswerSource.CALENDAR}
    assert all(h.detail["evidence"]["authenticated_by"] in ("dmarc", "dkim", "own-dkim") for h in history)
    assert all(h.detail["evidence"]["door"] == door for h in history)


@pytest.fixture
def dns() -> Iterator[DnsStub]:
    """DNS for the endpoint's DKIM check: the keys of example.nl and evil.example."""
    keys = [signing_key("example.nl"), signing_key("evil.example")]
    with dns_stub({key.name: key.record for key in keys}) as stub:
        yield stub


@dataclass
class Endpoint:
    controller: Controller
    handler: ReplyHandler
    handed: list[list[int]]

    def deliver(self, sender: str, data: bytes) -> None:
        with smtplib.SMTP(self.controller.hostname, self.controller.port) as client:
            client.sendmail(sender, ["uitnodigingen@example.org"], data)

    def wait(self, count: int) -> None:
        wait_until(lambda: len(self.handler.results) >= count, timeout=60, what=f"{count} mails handled")


@pytest.fixture
def endpoint(runtime: Any, dns: DnsStub) -> Iterator[Endpoint]:
    """The inbound SMTP endpoint, trusting mx.example.org and checking DKIM through the DNS stub; what it
    enqueues is handed to a list (no worker runs here)."""
    settings = runtime.settings.model_copy(
        update={"reply_authserv_ids": OUR_SERVER, "dns_resolver": dns.address}
    )
    handed: list[list[int]] = []
    handler = ReplyHandler(runtime.sessions, lambda: datetime.now(UTC), settings, handed.append)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield Endpoint(controller, handler, handed)
    controller.stop()


def test_only_authenticated_replies_count_over_smtp(runtime: Any, endpoint: Endpoint, dns: DnsStub) -> None:
    sent = matrix(invite(runtime, [s.address for s in matrix("", "smtp")]), "smtp")
    for s in sent:
        endpoint.deliver(s.address, s.data)
    endpoint.wait(len(sent))
    assert [r.recorded for r in endpoint.handler.results] == [s.counts for s in sent]
    assert [r.held for r in endpoint.handler.results] == [not s.counts for s in sent]
    assert_counted(runtime, sent, "smtp")
    assert "sel._domainkey.example.nl" in dns.questions and "sel._domainkey.evil.example" in dns.questions
    assert held(runtime)["outlook-missing@example.nl"].reason == (
        "afzender niet geverifieerd: geen Authentication-Results van de eigen mailserver; "
        "geen geldige DKIM-handtekening van example.nl"
    )
    assert endpoint.handed == [], "a calendar reply needs no confirmation, and a held one sends nothing"


def test_forged_senders_are_held_and_change_no_answer(runtime: Any, endpoint: Endpoint) -> None:
    victims = [f"victim{n}@example.nl" for n in range(6)]
    uid = invite(runtime, victims)
    mallory_passes = ar("dmarc=pass header.from=evil.example")
    forged = [
        # The display name says the victim; the mailbox is Mallory's, whose own domain passes DMARC.
        with_from(
            with_headers(outlook(uid, victims[0]), mallory_passes), f"{victims[0]} <mallory@evil.example>"
        ),
        with_from(
            with_headers(google(uid, victims[1]), mallory_passes), f'"{victims[1]}" <mallory@evil.example>'
        ),
        with_from(
            with_headers(apple(uid, victims[2]), ar("dmarc=pass")), f"{victims[2]}, mallory@evil.example"
        ),
        with_headers(outlook(uid, victims[3]), ar("dmarc=pass"), "From: mallory@evil.example"),
        # Reply-To the victim, From Mallory: Reply-To never says who answered.
        with_headers(
            outlook(uid, victims[4], sender="mallory@evil.example"), mallory_passes, f"Reply-To: {victims[4]}"
        ),
        # From the victim outright, with nothing to show for it.
        google(uid, victims[5]),
    ]
    for data in forged:
        endpoint.deliver("mallory@evil.example", data)
    endpoint.wait(len(forged))
    assert not any(r.recorded for r in endpoint.handler.results)
    assert all(r.held for r in endpoint.handler.results)
    assert set(answers(runtime).values()) == {None}
    waiting = held(runtime)
    assert set(waiting) == set(victims)
    assert waiting[victims[0]].reason.startswith("afzender ongeldig")
    assert waiting[victims[1]].reason.startswith(
        "afzender ongeldig: de naam in de From-regel bevat een e-mailadres"
    )
    assert waiting[victims[2]].reason == "afzender ongeldig: de From-regel noemt 2 adressen, niet één"
    assert waiting[victims[3]].reason == "afzender ongeldig: meer dan één From-regel"
    assert waiting[victims[4]].reason == f"afzender mallory@evil.example is niet de genodigde {victims[4]}"
    assert waiting[victims[5]].reason.startswith("afzender niet geverifieerd")
    assert waiting[victims[5]].evidence["from"] == victims[5]


def test_unknown_forged_and_malformed_replies_are_not_recorded(runtime: Any, endpoint: Endpoint) -> None:
    uid = invite(runtime, ["zoe@example.nl", "bram@example.nl", "anne@example.nl"])
    passed = ar("dmarc=pass header.from=example.nl")
    endpoint.deliver("mallory@example.com", outlook(uid, "zoe@example.nl", sender="mallory@example.com"))
    endpoint.deliver("x@example.org", with_headers(outlook("other-uid@invites", "x@example.org"), passed))
    endpoint.deliver("bram@example.nl", outlook(uid, "bram@example.nl", method="REQUEST"))
    endpoint.deliver("anne@example.nl", b"From: anne@example.nl\r\nSubject: vraag\r\n\r\nKomt er koffie?\r\n")
    endpoint.wait(4)
    results = endpoint.handler.results
    reasons = [result.reason for result in results]
    assert not any(result.recorded for result in results)
    assert [result.held for result in results] == [True, False, False, False]
    assert reasons[0] == "afzender mallory@example.com is niet de genodigde zoe@example.nl"
    assert reasons[1].startswith("no invitation for x@example.org")
    assert reasons[2] == "METHOD is REQUEST, not REPLY" and reasons[3] == "no calendar part"
    assert set(answers(runtime).values()) == {None}


def test_a_reply_to_a_cancelled_event_changes_nothing(runtime: Any, endpoint: Endpoint) -> None:
    uid = invite(runtime, ["zoe@example.nl"])
    with db.transaction(runtime.sessions) as session:
        session.scalars(select(Event)).one().status = "cancelled"
    endpoint.deliver("zoe@example.nl", with_headers(outlook(uid, "zoe@example.nl"), ar("dmarc=pass")))
    endpoint.deliver("zoe@example.nl", outlook(uid, "zoe@example.nl"))
    endpoint.wait(2)
    assert [r.reason for r in endpoint.handler.results] == [
        "zoe@example.nl: this event has been cancelled"
    ] * 2
    assert answers(runtime)["zoe@example.nl"] is None and held(runtime) == {}


def test_a_calendar_reply_never_confirms_a_registration(runtime: Any, endpoint: Endpoint) -> None:
    uid = invite(runtime, ["nieuw@example.nl"])
    with db.transaction(runtime.sessions) as session:
        session.scalars(select(Invitation)).one().pending = True
    endpoint.deliver(
        "nieuw@example.nl", with_headers(google(uid, "nieuw@example.nl", "ACCEPTED"), ar("dmarc=pass"))
    )
    endpoint.wait(1)
    assert endpoint.handler.results[0].held and endpoint.handler.results[0].reason == NOT_CONFIRMED
    with runtime.sessions() as session:
        invitation = session.scalars(select(Invitation)).one()
        assert (invitation.answer, invitation.pending) == (None, True)
    row = held(runtime)["nieuw@example.nl"]
    assert (row.answer, row.evidence["authenticated_by"]) == (Answer.ACCEPTED, "dmarc")


def test_an_authenticated_reply_queues_the_notices_it_calls_for(runtime: Any, endpoint: Endpoint) -> None:
    uid = invite(runtime, ["zoe@example.nl", "bram@example.nl"], capacity=1)
    passed = ar("dmarc=pass header.from=example.nl")

    def notices() -> list[tuple[str, str, int]]:
        with runtime.sessions() as session:
            return [
                (m.kind, m.to_address, m.id)
                for m in session.scalars(select(OutboundMessage).order_by(OutboundMessage.id))
            ]

    endpoint.deliver("zoe@example.nl", with_headers(outlook(uid, "zoe@example.nl"), passed))
    endpoint.wait(1)
    assert notices() == [] and endpoint.handed == [], "an Accept pressed in a calendar needs no confirmation"
    endpoint.deliver("bram@example.nl", with_headers(google(uid, "bram@example.nl", "ACCEPTED"), passed))
    endpoint.wait(2)
    (waitlist,) = notices()
    assert waitlist[:2] == ("waitlist", "bram@example.nl")
    assert endpoint.handed == [[waitlist[2]]], "enqueued after the commit"
    endpoint.deliver("zoe@example.nl", with_headers(outlook(uid, "zoe@example.nl", "DECLINED"), passed))
    endpoint.wait(3)
    assert all(r.recorded for r in endpoint.handler.results)
    moved_up = notices()[1]
    assert moved_up[:2] == ("rsvp-confirmation", "bram@example.nl"), (
        "Bram moved up when Zoe's place came free"
    )
    assert endpoint.handed == [[waitlist[2]], [moved_up[2]]]
    with runtime.sessions() as session:
        bram = session.scalars(
            select(Invitation).join(Recipient).where(Recipient.email_key == "bram@example.nl")
        ).one()
        assert (bram.answer, bram.waitlist_position) == (Answer.ACCEPTED, None)


def test_the_dkim_lookup_asks_the_configured_resolver(dns: DnsStub) -> None:
    lookup = dns_lookup(dns.address)
    key = signing_key("example.nl")
    assert lookup(f"{key.name}.".encode()) == key.record.encode(), "a long record's strings are joined"
    assert lookup(b"nobody._domainkey.example.nl.") is None
    assert dns.questions == [key.name, "nobody._domainkey.example.nl"]


def test_a_reply_replayed_after_a_later_answer_changes_nothing(runtime: Any, endpoint: Endpoint) -> None:
    """A genuine, authenticated Accept mailed again after the person declined on the page (a replay, or a
    reply stuck in a queue for a day) must not undo the decline: a reply older than the answer is ignored."""
    uid = invite(runtime, ["zoe@example.nl"])
    passed = ar("dmarc=pass header.from=example.nl")
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    old_accept = with_headers(outlook(uid, "zoe@example.nl", stamped=an_hour_ago), passed)
    endpoint.deliver("zoe@example.nl", old_accept)
    endpoint.wait(1)
    assert answers(runtime)["zoe@example.nl"] == Answer.ACCEPTED, "in time, the reply counts"
    with runtime.sessions() as session:
        invitation = session.scalars(select(Invitation)).one()
        record_answer(session, invitation, Answer.DECLINED, AnswerSource.WEB, datetime.now(UTC))
        session.commit()
    endpoint.deliver("zoe@example.nl", old_accept)
    endpoint.wait(2)
    replayed = endpoint.handler.results[1]
    assert not replayed.recorded and not replayed.held
    assert replayed.reason == "zoe@example.nl: the reply was made before the answer already recorded"
    assert answers(runtime)["zoe@example.nl"] == Answer.DECLINED
    # A reply made after the decline (Zoe changed her mind in Outlook) counts again.
    endpoint.deliver("zoe@example.nl", with_headers(outlook(uid, "zoe@example.nl"), passed))
    endpoint.wait(3)
    assert answers(runtime)["zoe@example.nl"] == Answer.ACCEPTED
