"""RSVP load test: uvicorn on loopback, 500 recipients answering at once, on SQLite and on PostgreSQL.

Two phases against the same server; each answer comes on a new connection, as from a browser on a new
visit (with keep-alive, one worker process would hold most of the 500 connections and the other sit idle),
and carries what a person's browser sends with it (the page's stamp, its script's evidence), so none is held:

- `saturate`: every recipient posts its next answer as soon as the last one is answered (a closed loop).
  This measures the most the server does; its latency is mostly time in the queue, since by Little's law
  500 waiting recipients at 1,000/s wait 500 ms on average.
- `paced`: the recipients together post at `--rate` answers a second (an open loop: each POST is due at
  its own time, and its latency counts from then, so a server that falls behind shows it). This answers
  whether the server keeps up with that rate, and how fast each answer is.

It prints throughput and p50/p99 latency of the RSVP POST per phase, then checks that every answer is in
the history exactly once, that the final answers are the last ones posted, and that every answer queued its
confirmation in the outbox. Bounded: each recipient posts `--rounds` answers per phase, to 127.0.0.1 only.
PostgreSQL runs when INVITES_TEST_DATABASE_URL is set, in its own database `<name>_rsvp_load` on that
server, so the test database is left alone.

    python -m bench.rsvp_load [--recipients 500] [--rounds 10] [--paced-rounds 10] [--rate 1000]
                              [--workers 2] [--only sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from invites import db
from invites.adapters.embedded import client_for, ensure_running, stop
from invites.adapters.sink import free_port
from invites.db.models import AnswerHistory, Invitation, OutboundMessage
from invites.domain.eventfile import parse_event_file
from invites.domain.evidence import page_stamp
from invites.domain.tokens import make_token
from invites.services.events import load_event
from invites.services.imports import import_stream
from invites.settings import project_dir

SECRET = "bench-secret-for-the-rsvp-load-test"
ANSWERS = ("accepted", "declined", "tentative")
# What a person's browser sends with an answer besides the answer: the page's stamp from a few seconds ago,
# and what the page's script saw (a pointer path, a trusted press); anything less is held
# (invites.domain.evidence).
PERSON_SEEN = "js;m=24;k=0;w=1;t=0;p=1"
READ_FOR = timedelta(seconds=5)
HOST = "127.0.0.1"
T = TypeVar("T")


@dataclass(frozen=True)
class Phase:
    name: str
    rounds: int
    rate: float | None  # answers a second for all recipients together; None posts as fast as answered


def answer_for(recipient: int, round_: int) -> str:
    # Consecutive rounds differ, so every POST changes the answer and queues a confirmation.
    return ANSWERS[(recipient + round_) % len(ANSWERS)]


def own_database(url: str) -> str:
    """A fresh database of our own next to the one named in `url`: the load test must not touch the
    database the test suite uses, and a new one needs no downgrade of migrations that may be in flux."""
    parsed = make_url(url)
    name = f"{parsed.database}_rsvp_load"
    with psycopg.connect(db.normalise_url(url).replace("+psycopg", ""), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return parsed.set(database=name).render_as_string(hide_password=False)


def prepare(url: str, recipients: int) -> list[str]:
    engine = db.make_engine(url)
    db.upgrade(engine)
    factory = db.session_factory(engine)
    spec = parse_event_file((project_dir("examples") / "lokaal-samenspel-2018.toml").read_bytes())
    data = ("email\n" + "".join(f"load{i}@example.org\n" for i in range(recipients))).encode()
    now = datetime.now(UTC)
    with db.transaction(factory) as session:
        event = load_event(session, spec, now).event
        event.rsvp_deadline = None
        import_stream(session, event, io.BytesIO(data), "load.csv", len(data), now)
    with factory() as session:
        tokens = [
            make_token(SECRET, public_id, version)
            for public_id, version in session.execute(
                select(Invitation.public_id, Invitation.token_version).order_by(Invitation.id)
            )
        ]
    engine.dispose()
    return tokens


async def post_answers(
    index: int, token: str, phase: Phase, first_round: int, recipients: int, start: float, port: int
) -> list[float]:
    """One recipient posting this phase's answers, each on a new connection; returns their latencies."""
    latencies: list[float] = []
    for round_ in range(phase.rounds):
        served = page_stamp(SECRET, token, datetime.now(UTC) - READ_FOR)
        form = {"answer": answer_for(index, first_round + round_), "served": served, "evidence": PERSON_SEEN}
        body = urllib.parse.urlencode(form).encode()
        request = (
            f"POST /r/{token} HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: rsvp-load\r\nConnection: close\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        if phase.rate is None:
            due = time.perf_counter()
        else:
            # Spread evenly: recipient 0 of round 0 first, then the others, then round 1, and so on.
            due = start + (round_ * recipients + index) / phase.rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(request)
            response = await reader.read()
        finally:
            writer.close()
        latencies.append(time.perf_counter() - due)
        status = int(response[9:12])
        if status != 303:
            raise RuntimeError(f"POST answered {status}: {response[:300]!r}")
    return latencies


async def load(port: int, tokens: list[str], phase: Phase, first_round: int) -> tuple[list[float], float]:
    start = time.perf_counter()
    results = await asyncio.gather(
        *(
            post_answers(i, token, phase, first_round, len(tokens), start, port)
            for i, token in enumerate(tokens)
        )
    )
    elapsed = time.perf_counter() - start
    return [latency for result in results for latency in result], elapsed


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """The load on uvloop where it is installed (with uvicorn[standard]): less of the machine for the load."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def cpu_seconds(root: int) -> float:
    """CPU time used so far by a process and its children (Linux /proc; 0 elsewhere)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone since the listing
        pid, ppid = int(stat.parent.name), int(fields[1])
        if root in (pid, ppid):
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def machine_busy() -> tuple[int, int]:
    """Busy and total CPU ticks of the whole machine so far (Linux /proc/stat; zeros elsewhere)."""
    try:
        ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0, 0
    idle = ticks[3] + ticks[4]  # idle, iowait
    return sum(ticks) - idle, sum(ticks)


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def count(url: str) -> tuple[int, int, dict[str, int]]:
    """History rows, confirmations in the outbox, and the final answers."""
    engine = db.make_engine(url)
    with db.session_factory(engine)() as session:
        history = int(session.scalar(select(func.count()).select_from(AnswerHistory)) or 0)
        confirmations = int(
            session.scalar(
                select(func.count())
                .select_from(OutboundMessage)
                .where(OutboundMessage.kind == "rsvp-confirmation")
            )
            or 0
        )
        answers = {
            str(answer.value): int(n)
            for answer, n in session.execute(
                select(Invitation.answer, func.count()).group_by(Invitation.answer)
            )
            if answer is not None
        }
    engine.dispose()
    return history, confirmations, answers


def wait_until_up(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.1)


def run(
    name: str, url: str, var: Path, redis_url: str, phases: list[Phase], recipients: int, workers: int
) -> None:
    tokens = prepare(url, recipients)
    port = free_port()
    queue = f"bench-rsvp-{uuid.uuid4().hex[:8]}"  # the confirmations' tasks, thrown away afterwards
    server = _start_server(url, var, redis_url, queue, port, workers)
    first_round = 0
    try:
        wait_until_up(port, server)
        for phase in phases:
            _run_phase(name, port, tokens, phase, first_round, recipients, server.pid)
            first_round += phase.rounds
    finally:
        server.terminate()
        server.wait(30)
        with client_for(redis_url) as client:
            client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
    _check_answers(name, url, first_round, recipients)


def _start_server(
    url: str, var: Path, redis_url: str, queue: str, port: int, workers: int
) -> subprocess.Popen[bytes]:
    """uvicorn with the app on `port`, its confirmations' tasks going to `queue` and no mail sent."""
    env = {
        **os.environ,
        "INVITES_DATABASE_URL": url,
        "INVITES_REDIS_URL": redis_url,
        "INVITES_VAR_DIR": str(var),
        "INVITES_SECRET_KEY": SECRET,
        "INVITES_RSVP_CLIENT_LIMIT": str(10**9),
        "INVITES_SMTP_URL": "smtp://127.0.0.1:9",
        "INVITES_QUEUE": queue,
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "invites.web.app:create_app"]
    command += ["--host", HOST, "--port", str(port), "--workers", str(workers)]
    return subprocess.Popen([*command, "--log-level", "warning", "--no-access-log"], env=env)


def _run_phase(
    name: str, port: int, tokens: list[str], phase: Phase, first_round: int, recipients: int, server: int
) -> None:
    """Post one phase's answers and print its throughput, latencies and CPU, and whether a paced phase
    met its goal."""
    cpu, busy = cpu_seconds(server), machine_busy()
    latencies, elapsed = run_loop(load(port, tokens, phase, first_round))
    cpu = cpu_seconds(server) - cpu
    (busy_now, total_now), (busy_then, total_then) = machine_busy(), busy
    latencies.sort()
    offered = f"paced at {phase.rate:,.0f}/s" if phase.rate else "as fast as answered"
    print(
        f"rsvp {name} {phase.name} ({offered}): {len(latencies):,} POSTs from {recipients} "
        f"recipients in {elapsed:.1f} s = {len(latencies) / elapsed:,.0f}/s; "
        f"p50 {percentile(latencies, 0.50) * 1000:.0f} ms, "
        f"p90 {percentile(latencies, 0.90) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms; "
        f"server CPU {cpu / len(latencies) * 1000:.1f} ms a POST, "
        f"machine {(busy_now - busy_then) / max(1, total_now - total_then):.0%} busy",
        flush=True,
    )
    if phase.rate:
        # The goal: the offered rate served (within 2%), with p99 under 100 ms.
        kept_up = len(latencies) / elapsed >= 0.98 * phase.rate
        met = kept_up and percentile(latencies, 0.99) < 0.100
        print(
            f"rsvp {name} goal ({phase.rate:,.0f}/s, p99 < 100 ms): {'met' if met else 'NOT met'}",
            flush=True,
        )


def _check_answers(name: str, url: str, rounds: int, recipients: int) -> None:
    """Print whether every answer posted in `rounds` is in the database exactly once; exit 1 if not."""
    posts = rounds * recipients
    history, confirmations, answers = count(url)
    expected = {a: sum(1 for i in range(recipients) if answer_for(i, rounds - 1) == a) for a in ANSWERS}
    good = history == posts and confirmations == posts and answers == expected
    print(
        f"rsvp {name} check: {posts:,} POSTs, {history:,} history rows, {confirmations:,} confirmations, "
        f"final answers {dict(sorted(answers.items()))}: {'none lost or doubled' if good else 'MISMATCH'}",
        flush=True,
    )
    if not good:
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=10, help="answers per recipient, posted flat out")
    parser.add_argument("--paced-rounds", type=int, default=10, help="answers per recipient, paced")
    parser.add_argument("--rate", type=float, default=1000, help="answers a second in the paced phase")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    args = parser.parse_args()
    # The per-link limit (30 a minute) is the server's to enforce: stay under it rather than switch it off.
    if args.rounds + args.paced_rounds > 25:
        parser.error("--rounds plus --paced-rounds must stay at 25 or under: the per-link rate limit")
    phases = [Phase("saturate", args.rounds, None), Phase("paced", args.paced_rounds, args.rate)]
    phases = [phase for phase in phases if phase.rounds > 0]
    with tempfile.TemporaryDirectory() as tmp:
        var = Path(tmp) / "var"
        redis_url = os.environ.get("INVITES_TEST_REDIS_URL") or ensure_running(var)
        try:
            targets = {"sqlite": f"sqlite:///{Path(tmp) / 'load.db'}"}
            if os.environ.get("INVITES_TEST_DATABASE_URL"):
                targets["postgresql"] = os.environ["INVITES_TEST_DATABASE_URL"]
            for name, url in targets.items():
                if args.only in (None, name):
                    url = own_database(url) if name == "postgresql" else url
                    run(name, url, var, redis_url, phases, args.recipients, args.workers)
        finally:
            stop(var)


if __name__ == "__main__":
    main()
