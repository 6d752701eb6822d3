"""The delivery engine against real SMTP servers and real databases, without a broker: claims, outcomes,
retries and the sweep."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import timedelta
from email.parser import BytesParser
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, text

from invites import db
from invites.adapters.mailer import SmtpMailer
from invites.adapters.sink import StoreHandler, free_port, stored_messages
from invites.db.models import Campaign, Event, Invitation, OutboundMessage, Recipient
from invites.domain.errors import InputError
from invites.domain.eventfile import parse_event_file
from invites.domain.states import CampaignState, MessageStatus
from invites.domain.tokens import make_token
from invites.services import campaigns
from invites.services.delivery import Composers, claim, deliver, deliver_batch, sweep
from invites.services.events import load_event
from invites.services.imports import import_list
from invites.settings import SmtpTarget
from tests.conftest import EVENT_FILE, NOW

SLUG = "lokaal-samenspel-2018"
PEOPLE = [
    "anne@example.org",
    "refuse.this@example.org",
    "later@example.org",
    "bram@example.nl",
    "carla@example.com",
]


class PickyHandler(StoreHandler):
    """A real SMTP server that refuses some recipients for good and some for now."""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("refuse"):
            return "550 5.1.1 mailbox unavailable"
        if address.startswith("later"):
            return "451 4.7.1 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"


class PipeliningPickyHandler(PickyHandler):
    """The same server, offering PIPELINING: the client then writes MAIL, RCPT and DATA at once."""

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]


@pytest.fixture(params=[PickyHandler, PipeliningPickyHandler], ids=["one-by-one", "pipelined"])
def picky_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Controller]:
    handler = request.param(tmp_path / "picky")
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller
    controller.stop()


def prepare(runtime: Any, people: list[str]) -> campaigns.StartedCampaign:
    audience = "e-mail,naam,functie\n" + "".join(f"{a},Persoon {i},raadslid\n" for i, a in enumerate(people))
    with db.transaction(runtime.sessions) as session:
        event = load_event(session, parse_event_file(EVENT_FILE.read_bytes()), NOW).event
        import_list(session, event, audience.encode(), "people.csv", NOW)
    return campaigns.start_campaign(
        runtime.sessions, SLUG, "invitation", runtime.settings, runtime.templates, NOW
    )


def all_ids(runtime: Any) -> list[int]:
    with runtime.sessions() as session:
        return list(session.scalars(select(OutboundMessage.id).order_by(OutboundMessage.id)))


def rows_by_address(runtime: Any) -> dict[str, OutboundMessage]:
    with runtime.sessions() as session:
        return {row.to_address: row for row in session.scalars(select(OutboundMessage))}


def test_each_reply_is_classified_and_one_refusal_never_stops_the_others(
    runtime: Any, picky_server: Controller, tmp_path: Path
) -> None:
    prepare(runtime, PEOPLE)
    mailer = SmtpMailer(SmtpTarget.parse(f"smtp://127.0.0.1:{picky_server.port}"))
    result = deliver_batch(
        runtime.sessions, all_ids(runtime), mailer, runtime.settings, runtime.templates, lambda: NOW
    )
    assert (result.claimed, result.sent, result.deferred, result.failed) == (5, 3, 1, 1)

    rows = rows_by_address(runtime)
    assert rows["refuse.this@example.org"].status == MessageStatus.FAILED
    assert rows["refuse.this@example.org"].last_reply.startswith("550 5.1.1 mailbox unavailable")
    later = rows["later@example.org"]
    assert later.status == MessageStatus.DEFERRED and later.last_reply.startswith("451")
    assert later.next_attempt_at == NOW + timedelta(seconds=60)
    for address in ("anne@example.org", "bram@example.nl", "carla@example.com"):
        assert rows[address].status == MessageStatus.SENT and rows[address].sent_at == NOW
    assert len(stored_messages(tmp_path / "picky")) == 3


def test_a_server_that_is_down_defers_and_a_later_retry_delivers(runtime: Any, sink: Any) -> None:
    prepare(runtime, ["anne@example.org", "bram@example.nl"])
    down = SmtpMailer(SmtpTarget.parse(f"smtp://127.0.0.1:{free_port()}"))
    result = deliver_batch(
        runtime.sessions, all_ids(runtime), down, runtime.settings, runtime.templates, lambda: NOW
    )
    assert result.deferred == 2 and result.sent == 0
    assert all(row.last_reply.startswith("connection:") for row in rows_by_address(runtime).values())

    handed: list[list[int]] = []
    assert sweep(runtime.sessions, handed.append, NOW + timedelta(seconds=30), runtime.settings) == 0
    later = NOW + timedelta(seconds=61)
    assert sweep(runtime.sessions, handed.append, later, runtime.settings) == 2

    up = SmtpMailer(SmtpTarget.parse(sink.url))
    retried = deliver_batch(
        runtime.sessions, handed[0], up, runtime.settings, runtime.templates, lambda: later
    )
    assert retried.sent == 2
    rows = rows_by_address(runtime).values()
    assert {row.status for row in rows} == {MessageStatus.SENT} and {row.attempts for row in rows} == {2}
    assert len(stored_messages(sink.directory)) == 2

    # While rows were deferred the campaign ran; once every row is final, the next sweep calls it done.
    with runtime.sessions() as session:
        assert session.scalars(select(Campaign.state)).all() == [CampaignState.RUNNING]
    assert sweep(runtime.sessions, handed.append, later, runtime.settings) == 0
    with runtime.sessions() as session:
        [campaign] = session.scalars(select(Campaign)).all()
        assert campaign.state == CampaignState.DONE and campaign.finished_at == later


def test_each_row_is_composed_for_its_own_person_and_one_without_an_invitation_fails_alone(
    runtime: Any, sink: Any
) -> None:
    # A batch reads its rows as plain values: every message must carry its own person's name and link.
    prepare(runtime, ["anne@example.org", "bram@example.nl", "carla@example.com"])
    with db.transaction(runtime.sessions) as session:
        bram = session.scalars(select(OutboundMessage).where(OutboundMessage.to_address == "bram@example.nl"))
        bram.one().invitation_id = None
        links = {
            recipient.email: make_token(
                runtime.settings.secret_key, invitation.public_id, invitation.token_version
            )
            for invitation, recipient in session.execute(
                select(Invitation, Recipient).join(Recipient, Recipient.id == Invitation.recipient_id)
            )
        }
    mailer = SmtpMailer(SmtpTarget.parse(sink.url))
    result = deliver_batch(
        runtime.sessions, all_ids(runtime), mailer, runtime.settings, runtime.templates, lambda: NOW
    )
    assert (result.sent, result.failed) == (2, 1)
    rows = rows_by_address(runtime)
    assert rows["bram@example.nl"].status == MessageStatus.FAILED
    assert (
        rows["bram@example.nl"].last_reply
        == "could not compose: the message has no invitation to compose from"
    )

    received = {}
    for path in stored_messages(sink.directory):
        message = BytesParser(policy=default).parsebytes(path.read_bytes())
        received[message["To"].addresses[0].addr_spec] = message
    assert set(received) == {"anne@example.org", "carla@example.com"}
    for address, name in (("anne@example.org", "Persoon 0"), ("carla@example.com", "Persoon 2")):
        message = received[address]
        assert message["To"].addresses[0].display_name == name
        assert message["Message-ID"] == rows[address].message_id
        text = message.get_body(("plain",)).get_content()
        assert f"/r/{links[address]}" in text and name in text


def test_a_big_campaign_leaves_the_planner_statistics_of_what_it_wrote(
    runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("planner statistics are PostgreSQL's")

    def rows_known(table: str) -> float:
        # -1 until the table was first analysed (PostgreSQL 14 and newer).
        with runtime.sessions() as session:
            query = text("SELECT reltuples FROM pg_class WHERE relname = :table")
            return float(session.scalar(query, {"table": table}))

    monkeypatch.setattr(campaigns, "ANALYZE_AFTER", 4)
    prepare(runtime, ["anne@example.org", "bram@example.nl", "carla@example.com"])
    assert rows_known("outbound_message") == -1  # three rows: below the line, left to autovacuum

    more = [f"person{i}@example.org" for i in range(4)]
    audience = "e-mail,naam\n" + "".join(f"{address},Iemand\n" for address in more)
    with db.transaction(runtime.sessions) as session:
        event = session.scalars(select(Event)).one()
        import_list(session, event, audience.encode(), "more.csv", NOW)
    campaigns.start_campaign(runtime.sessions, SLUG, "invitation", runtime.settings, runtime.templates, NOW)
    assert rows_known("outbound_message") == 7
    assert rows_known("recipient") == 7 and rows_known("invitation") == 7


def test_a_row_is_claimed_once_until_its_lease_runs_out(runtime: Any) -> None:
    prepare(runtime, PEOPLE)
    ids = all_ids(runtime)
    lease = timedelta(minutes=5)
    with db.transaction(runtime.sessions) as session:
        assert claim(session, ids, NOW, lease) == ids
    with db.transaction(runtime.sessions) as session:
        assert claim(session, ids, NOW + timedelta(minutes=1), lease) == [], "held rows are not claimed twice"
    handed: list[list[int]] = []
    assert sweep(runtime.sessions, handed.append, NOW + timedelta(minutes=6), runtime.settings) == len(ids)
    with db.transaction(runtime.sessions) as session:
        assert claim(session, ids, NOW + timedelta(minutes=6), lease) == ids, "a dead worker's rows come back"


def test_concurrent_claims_split_the_rows_without_overlap(runtime: Any) -> None:
    prepare(runtime, [f"person{i}@example.org" for i in range(200)])
    ids = all_ids(runtime)
    won: list[list[int]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        with db.transaction(runtime.sessions) as session:
            mine = claim(session, ids, NOW, timedelta(minutes=5))
        with lock:
            won.append(mine)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    claimed = [row_id for mine in won for row_id in mine]
    assert sorted(claimed) == ids, "every row claimed exactly once"


def test_starting_a_campaign_twice_makes_no_second_row(runtime: Any) -> None:
    first = prepare(runtime, PEOPLE)
    second = campaigns.start_campaign(
        runtime.sessions, SLUG, "invitation", runtime.settings, runtime.templates, NOW
    )
    assert (first.new_rows, second.new_rows) == (5, 0)
    assert len(all_ids(runtime)) == 5


def test_a_deferral_past_the_event_start_gives_up_with_the_reason(runtime: Any) -> None:
    started = prepare(runtime, ["anne@example.org"])
    with runtime.sessions() as session:
        starts_at = session.scalar(select(Event.starts_at).where(Event.id == started.event_id))
    assert starts_at is not None
    down = SmtpMailer(SmtpTarget.parse(f"smtp://127.0.0.1:{free_port()}"))
    almost = starts_at - timedelta(seconds=30)  # the first retry would come after the meeting began
    result = deliver_batch(
        runtime.sessions, all_ids(runtime), down, runtime.settings, runtime.templates, lambda: almost
    )
    assert (result.deferred, result.failed) == (0, 1)
    row = rows_by_address(runtime)["anne@example.org"]
    assert row.status == MessageStatus.FAILED and row.next_attempt_at is None
    assert row.last_reply.startswith("gave up after 1 attempts: connection:")


def test_a_configured_lifetime_replaces_the_event_start(runtime: Any) -> None:
    prepare(runtime, ["anne@example.org"])
    settings = runtime.settings.model_copy(update={"message_lifetime": 30, "retry_schedule": "10,20"})
    down = SmtpMailer(SmtpTarget.parse(f"smtp://127.0.0.1:{free_port()}"))
    first = deliver_batch(runtime.sessions, all_ids(runtime), down, settings, runtime.templates, lambda: NOW)
    assert first.deferred == 1 and first.again_in == pytest.approx(10, abs=1)
    row = rows_by_address(runtime)["anne@example.org"]
    assert row.next_attempt_at == NOW + timedelta(seconds=10)
    later = NOW + timedelta(seconds=11)
    again = SmtpMailer(SmtpTarget.parse(f"smtp://127.0.0.1:{free_port()}"))
    second = deliver_batch(
        runtime.sessions, all_ids(runtime), again, settings, runtime.templates, lambda: later
    )
    assert second.failed == 1, "the next retry, 20 s later, would be past the 30 s lifetime"


def test_a_paused_campaign_sends_nothing_until_it_is_resumed(runtime: Any, sink: Any) -> None:
    started = prepare(runtime, PEOPLE[:3])
    campaigns.pause_campaign(runtime.sessions, started.campaign_id, NOW)
    ids = all_ids(runtime)
    paused = deliver_batch(
        runtime.sessions,
        ids,
        SmtpMailer(SmtpTarget.parse(sink.url)),
        runtime.settings,
        runtime.templates,
        lambda: NOW,
    )
    assert paused.claimed == 0
    handed: list[list[int]] = []
    assert sweep(runtime.sessions, handed.append, NOW + timedelta(hours=1), runtime.settings) == 0
    with pytest.raises(InputError, match="only a running one can pause"):
        campaigns.pause_campaign(runtime.sessions, started.campaign_id, NOW)

    assert campaigns.resume_campaign(runtime.sessions, started.campaign_id, handed.append, 100, NOW) == 3
    resumed = deliver_batch(
        runtime.sessions,
        handed[0],
        SmtpMailer(SmtpTarget.parse(sink.url)),
        runtime.settings,
        runtime.templates,
        lambda: NOW,
    )
    assert resumed.sent == 3 and len(stored_messages(sink.directory)) == 3


def test_a_cancelled_campaign_keeps_what_was_sent_and_never_sends_the_rest(runtime: Any, sink: Any) -> None:
    started = prepare(runtime, PEOPLE)
    ids = all_ids(runtime)
    deliver_batch(
        runtime.sessions,
        ids[:2],
        SmtpMailer(SmtpTarget.parse(sink.url)),
        runtime.settings,
        runtime.templates,
        lambda: NOW,
    )
    assert campaigns.cancel_campaign(runtime.sessions, started.campaign_id, NOW) == 3
    after = deliver_batch(
        runtime.sessions,
        ids,
        SmtpMailer(SmtpTarget.parse(sink.url)),
        runtime.settings,
        runtime.templates,
        lambda: NOW,
    )
    assert after.claimed == 0
    with runtime.sessions() as session:
        progress = campaigns.campaign_progress(session, started.campaign_id, NOW)
    assert progress["state"] == "cancelled"
    assert (progress["sent"], progress["cancelled"], progress["done"], progress["total"]) == (2, 3, 5, 5)
    assert len(stored_messages(sink.directory)) == 2


class CountingHandler(StoreHandler):
    """Notes each client connection, and how many messages were in its hands at once."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.peers: set[Any] = set()
        self.busy = 0
        self.most_busy = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.peers.add(session.peer)
        self.busy += 1
        self.most_busy = max(self.most_busy, self.busy)
        await asyncio.sleep(0.05)
        self.busy -= 1
        return await super().handle_DATA(server, session, envelope)


def test_a_worker_keeps_its_pooled_connections_between_batches_and_uses_them_at_once(
    settings: Any, tmp_path: Path
) -> None:
    handler = CountingHandler(tmp_path / "counted")
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), decode_data=False)
    controller.start()
    from invites.runtime import Runtime

    runtime = Runtime(
        settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{controller.port}", "smtp_connections": 3})
    )
    db.upgrade(runtime.engine)
    try:
        prepare(runtime, [f"person{i}@example.org" for i in range(12)])
        ids = all_ids(runtime)
        first = runtime.deliver(ids[:6], lambda: NOW)
        second = runtime.deliver(ids[6:], lambda: NOW)
        assert first.sent == second.sent == 6
        assert len(handler.peers) == 3, "three connections, opened once and kept for the second batch"
        assert handler.most_busy == 3, "the three were used at the same time"
    finally:
        runtime.close_delivery()
        runtime.engine.dispose()
        controller.stop()


def test_a_worker_composes_anew_for_an_event_changed_between_batches(runtime: Any, sink: Any) -> None:
    # Composers outlive a batch; one built before the change must not compose the next batch.
    prepare(runtime, PEOPLE[:2])
    first, second = all_ids(runtime)
    composers = Composers()

    async def deliver_one(row_id: int) -> None:
        mailer = SmtpMailer(SmtpTarget.parse(sink.url))
        try:
            result = await deliver(
                runtime.sessions,
                [row_id],
                mailer,
                runtime.settings,
                runtime.templates,
                lambda: NOW,
                composers=composers,
            )
        finally:
            await mailer.close()
        assert result.sent == 1

    asyncio.run(deliver_one(first))
    with db.transaction(runtime.sessions) as session:
        event = session.scalars(select(Event)).one()
        before, event.title = event.title, "Lokaal Samenspel verplaatst"
    asyncio.run(deliver_one(second))
    subjects = [
        BytesParser(policy=default).parsebytes(path.read_bytes())["Subject"]
        for path in stored_messages(sink.directory)
    ]
    assert before in subjects[0] and "verplaatst" not in subjects[0]
    assert "Lokaal Samenspel verplaatst" in subjects[1]
