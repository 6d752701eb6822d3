"""RSVP load test: uvicorn on loopback, 500 recipients answering at once, on SQLite and on PostgreSQL.

Prints throughput and p50/p99 latency of the RSVP POST, then checks that no answer was lost or counted twice.
Bounded: each recipient posts a fixed number of answers, to 127.0.0.1 only.

    python -m bench.rsvp_load [--recipients 500] [--rounds 4] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import func, select

from invites import db
from invites.embedded import ensure_running, stop
from invites.eventfile import parse_event_file
from invites.events import load_event
from invites.imports import import_stream
from invites.models import AnswerHistory, Invitation
from invites.settings import project_dir
from invites.sink import free_port
from invites.tokens import make_token

SECRET = "bench-secret"
ANSWERS = ("accepted", "declined", "tentative")


def prepare(url: str, recipients: int) -> list[str]:
    engine = db.make_engine(url)
    db.downgrade(engine, "base")
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
            for public_id, version in session.execute(select(Invitation.public_id, Invitation.token_version))
        ]
    engine.dispose()
    return tokens


def count_history(url: str) -> tuple[int, dict[str, int]]:
    engine = db.make_engine(url)
    with db.session_factory(engine)() as session:
        total = int(session.scalar(select(func.count()).select_from(AnswerHistory)) or 0)
        answers = {
            str(answer.value): int(n)
            for answer, n in session.execute(
                select(Invitation.answer, func.count()).group_by(Invitation.answer)
            )
            if answer is not None
        }
    engine.dispose()
    return total, answers


async def hammer(base: str, tokens: list[str], rounds: int) -> list[float]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=len(tokens), max_keepalive_connections=len(tokens))
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:

        async def one(index: int, token: str) -> None:
            for round_ in range(rounds):
                answer = ANSWERS[(index + round_) % len(ANSWERS)]
                started = time.perf_counter()
                response = await client.post(f"/r/{token}", data={"answer": answer}, follow_redirects=False)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 303:
                    raise RuntimeError(f"POST answered {response.status_code}: {response.text[:200]}")

        await asyncio.gather(*(one(i, token) for i, token in enumerate(tokens)))
    return latencies


def run(name: str, url: str, var: Path, redis_url: str, recipients: int, rounds: int, workers: int) -> None:
    tokens = prepare(url, recipients)
    port = free_port()
    env = {
        **os.environ,
        "INVITES_DATABASE_URL": url,
        "INVITES_REDIS_URL": redis_url,
        "INVITES_VAR_DIR": str(var),
        "INVITES_SECRET_KEY": SECRET,
        "INVITES_RSVP_CLIENT_LIMIT": str(10**9),
        "INVITES_SMTP_URL": "smtp://127.0.0.1:9",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "invites.web.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.1)
        started = time.perf_counter()
        latencies = asyncio.run(hammer(f"http://127.0.0.1:{port}", tokens, rounds))
        elapsed = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(30)
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    total, answers = count_history(url)
    expected = {a: sum(1 for i in range(recipients) if ANSWERS[(i + rounds - 1) % 3] == a) for a in ANSWERS}
    verdict = "none lost or doubled" if total == len(latencies) and answers == expected else "MISMATCH"
    print(
        f"rsvp {name}: {len(latencies):,} POSTs from {recipients} concurrent recipients in {elapsed:.1f} s = "
        f"{len(latencies) / elapsed:,.0f}/s (goal 1,000 on PostgreSQL); p50 {p50:.0f} ms, p99 {p99:.0f} ms "
        f"(goal < 100 ms); history {total:,} rows, final answers {answers}: {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipients", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        var = Path(tmp) / "var"
        redis_url = os.environ.get("INVITES_TEST_REDIS_URL") or ensure_running(var)
        try:
            targets = {"sqlite": f"sqlite:///{Path(tmp) / 'load.db'}"}
            if os.environ.get("INVITES_TEST_DATABASE_URL"):
                targets["postgresql"] = os.environ["INVITES_TEST_DATABASE_URL"]
            for name, url in targets.items():
                run(name, url, var, redis_url, args.recipients, args.rounds, args.workers)
        finally:
            stop(var)


if __name__ == "__main__":
    main()
