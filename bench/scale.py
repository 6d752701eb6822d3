"""Scale-out benchmark: one campaign delivered by 1, 2, 4… worker processes (separate Celery workers, as on
separate machines), into Postfix's smtp-sink, through one Redis and one database. Prints messages per second
for each count, so the point where this machine's cores (not the design) become the limit shows.

    python -m bench.scale [--recipients N] [--workers 1,2,4] [--database-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench.deliver import SLUG, environment, final_count, prepare, process, smtp_sink_binary, wait_for_log
from invites import db
from invites.adapters import embedded
from invites.cli.processes import worker_command
from invites.messages.rendering import TemplateSet
from invites.services import campaigns
from invites.settings import Settings


def run(settings: Settings, env: dict[str, str], tmp: Path, recipients: int, workers: int) -> float:
    """Messages per second from the start of the campaign until every row is final."""
    prepare(settings.resolved_database_url, recipients)
    engine = db.make_engine(settings.resolved_database_url)
    factory = db.session_factory(engine)
    with contextlib.ExitStack() as stack:
        for n in range(workers):
            log = tmp / f"scale-{workers}-{n}.log"
            command = worker_command("--concurrency=1", "--loglevel=INFO", "--without-heartbeat")
            stack.enter_context(
                process([*command, f"--hostname=scale{n}-{uuid.uuid4().hex[:4]}@%h"], env, log)
            )
        for n in range(workers):
            wait_for_log(tmp / f"scale-{workers}-{n}.log", "ready.")
        from workers.tasks import enqueue_batch

        started = time.perf_counter()
        campaign = campaigns.start_campaign(
            factory, SLUG, "invitation", settings, TemplateSet(), datetime.now(UTC)
        )
        campaigns.enqueue_queued(factory, campaign.scope, enqueue_batch, settings.batch_size)
        while final_count(factory) < campaign.total:
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    engine.dispose()
    return campaign.total / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipients", type=int, default=5_000)
    parser.add_argument("--workers", default="1,2,4", help="worker process counts, comma-separated")
    parser.add_argument("--database-url", default="", help="default: a SQLite file in a temporary folder")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    sink = smtp_sink_binary()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        settings, env, port = environment(tmp, args.database_url)
        os.environ.update(env)
        try:
            with process([sink, "-u", "nobody", f"127.0.0.1:{port}", "1024"], log=tmp / "smtp-sink.log"):
                base = None
                for workers in counts:
                    rate = run(settings, env, tmp, args.recipients, workers)
                    base = base or rate
                    print(
                        f"{workers} worker processes: {rate:,.0f} msg/s ({rate / base:.2f}x), "
                        f"{os.cpu_count()} cores",
                        flush=True,
                    )
        finally:
            embedded.stop(tmp / "redis")


if __name__ == "__main__":
    main()
