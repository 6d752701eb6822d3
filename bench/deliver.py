"""Delivery benchmark, end to end: a 20,000-recipient campaign of the example invitation through real Celery
workers, a private Redis and the database bookkeeping, into Postfix's smtp-sink (a C SMTP sink; the Debian
package postfix is installed when it is missing, with no daemon started).

Prints messages per second from the start of the campaign until every row is final, and the workers' peak
RSS for the campaign and for one a tenth its size (memory must not grow with the list). In the same run it
times the naive pattern: one Celery task per message, an EmailMessage plus an icalendar object built for
each recipient, a new SMTP connection each time; and prints the ratio.

    python -m bench.deliver [--recipients N] [--naive N] [--processes N] [--database-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery import Celery
from sqlalchemy import func, select

from invites import db
from invites.adapters import embedded
from invites.adapters.sink import free_port
from invites.cli.processes import worker_command
from invites.db.models import Event, Invitation, OutboundMessage, Recipient
from invites.domain.eventfile import parse_event_file
from invites.domain.states import MessageStatus
from invites.messages.compose import composer_for
from invites.messages.rendering import TemplateSet
from invites.services import campaigns
from invites.services.events import load_event
from invites.services.imports import import_list
from invites.settings import Settings, project_dir

ROOT = Path(__file__).resolve().parent.parent
SLUG = "lokaal-samenspel-2018"


def smtp_sink_binary() -> str:
    """Postfix's smtp-sink, installed from Debian's packages when missing (no MTA daemon is started)."""
    found = shutil.which("smtp-sink") or (
        "/usr/sbin/smtp-sink" if Path("/usr/sbin/smtp-sink").exists() else ""
    )
    if found:
        return found
    print("installing postfix for smtp-sink …", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(
        ["debconf-set-selections"],
        input=b"postfix postfix/main_mailer_type select No configuration\n",
        check=True,
    )
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:  # forbid starting services while the package installs
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postfix"], check=True, env=env
        )
    finally:
        if ours:
            policy.unlink()
    return shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> Iterator[Any]:
    with contextlib.ExitStack() as stack:
        output = stack.enter_context(log.open("wb")) if log else subprocess.DEVNULL
        child = subprocess.Popen(
            args, env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield child
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
                try:
                    child.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()


def peak_rss_mib(pid: int) -> float:
    """The largest peak RSS (VmHWM) among a process and its children."""
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    peaks = []
    for each in pids:
        with contextlib.suppress(OSError):
            match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{each}/status").read_text())
            if match:
                peaks.append(int(match.group(1)) / 1024)
    return max(peaks, default=0.0)


def family(pid: int) -> list[int]:
    """A process and its children."""
    with contextlib.suppress(OSError):
        return [pid, *(int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    return [pid]


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time the processes have used so far."""
    total = 0
    for each in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            # Fields 14 and 15 of /proc/PID/stat, counted after the command's closing parenthesis.
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def named(command: str) -> list[int]:
    """The processes whose command name is `command` (PostgreSQL's server and its backends)."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == command:
                found.append(int(entry.name))
    return found


def wait_for_log(path: Path, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in (path.read_text(errors="replace") if path.exists() else ""):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} never said {text!r}:\n{path.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)


def fresh_database(url: str) -> Any:
    engine = db.make_engine(url)
    db.downgrade(engine, "base")
    db.upgrade(engine)
    return engine


def prepare(url: str, recipients: int) -> None:
    """A fresh database with the example event and `recipients` people invited."""
    engine = fresh_database(url)
    factory = db.session_factory(engine)
    now = datetime.now(UTC)
    spec = parse_event_file((project_dir("examples") / "lokaal-samenspel-2018.toml").read_bytes())
    rows = "".join(
        f"person.{i}@gemeente{i % 400}.example.nl,Persoon {i},raadslid\n" for i in range(recipients)
    )
    with db.transaction(factory) as session:
        event = load_event(session, spec, now).event
        import_list(session, event, ("e-mail,naam,functie\n" + rows).encode(), "bench.csv", now)
    engine.dispose()


def final_count(factory: Any) -> int:
    with factory() as session:
        done = [s for s in MessageStatus if s.final]
        return int(session.scalar(select(func.count()).where(OutboundMessage.status.in_(done))) or 0)


def wait_until_final(factory: Any, total: int, worker: Any, log: Path, started: datetime) -> float:
    """Seconds from `started` until the last row became final: read off the rows' own update times, so
    that this process can look rarely and leave the CPU to the workers."""
    while final_count(factory) < total:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker died:\n{log.read_text()[-3000:]}")
        time.sleep(0.25)
    with factory() as session:
        finished = session.scalar(select(func.max(OutboundMessage.updated_at)))
    assert finished is not None
    return float((finished - started).total_seconds())


def run_pipeline(
    settings: Settings,
    env: dict[str, str],
    tmp: Path,
    recipients: int,
    others: dict[str, int],
    processes: int = 2,
) -> dict[str, float]:
    """Our way: start the campaign (rows written, then ids enqueued in batches) and time it until every row
    is final. Also counts the CPU time each party used in that window (`others`: name → pid)."""
    prepare(settings.resolved_database_url, recipients)
    engine = db.make_engine(settings.resolved_database_url)
    factory = db.session_factory(engine)
    log = tmp / f"worker-{recipients}.log"
    command = worker_command(f"--concurrency={processes}", "--loglevel=INFO")
    command += [
        "--without-mingle",
        "--without-gossip",
        "--without-heartbeat",
        f"--hostname=bench-{recipients}@%h",
    ]
    with process(command, env, log) as worker:
        wait_for_log(log, "ready.")
        from workers.tasks import enqueue_batch

        parties = {
            "worker processes": family(worker.pid)[1:],
            "celery's main process": [worker.pid],
            **{name: [pid] for name, pid in others.items()},
        }
        if settings.resolved_database_url.startswith("postgresql"):
            # The server's backends for this run are born as the workers connect: counted at the end.
            parties["postgresql"] = named("postgres")
        cpu_before = {name: cpu_seconds(pids) for name, pids in parties.items()}
        own_before = sum(os.times()[:2])
        started = datetime.now(UTC)
        campaign = campaigns.start_campaign(factory, SLUG, "invitation", settings, TemplateSet(), started)
        campaigns.enqueue_queued(factory, campaign.scope, enqueue_batch, settings.batch_size)
        elapsed = wait_until_final(factory, campaign.total, worker, log, started)
        if "postgresql" in parties:
            parties["postgresql"] = sorted({*parties["postgresql"], *named("postgres")})
        cpu = {name: cpu_seconds(pids) - cpu_before[name] for name, pids in parties.items()}
        cpu["this process"] = sum(os.times()[:2]) - own_before
        peak = peak_rss_mib(worker.pid)
    with factory() as session:
        sent = session.scalar(select(func.count()).where(OutboundMessage.status == MessageStatus.SENT)) or 0
    engine.dispose()
    if sent != campaign.total:
        raise RuntimeError(f"only {sent} of {campaign.total} were sent; see {log}")
    return {
        "seconds": elapsed,
        "messages": campaign.total,
        "peak_mib": peak,
        **{f"cpu {name}": seconds for name, seconds in cpu.items()},
    }


# The naive pattern, as its own Celery app: `celery -A bench.deliver:naive worker`.
naive = Celery("naive")


@naive.on_configure.connect
def _configure_naive(sender: Celery, **_: Any) -> None:
    sender.conf.update(
        broker_url=os.environ.get("INVITES_REDIS_URL", ""),
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_default_queue=os.environ.get("INVITES_QUEUE", "naive"),
    )


_naive_engine: dict[int, Any] = {}


@naive.task(name="bench.naive_send")
def naive_send(row_id: int) -> None:
    """One message: read its row and event, build an EmailMessage and an icalendar object, open an SMTP
    connection, send, close it, and record the outcome."""
    import smtplib
    from email.message import EmailMessage

    from icalendar import Calendar
    from icalendar import Event as CalendarEvent

    settings = Settings()
    engine = _naive_engine.get(os.getpid())
    if engine is None:
        engine = _naive_engine[os.getpid()] = db.make_engine(settings.resolved_database_url)
    with db.session_factory(engine)() as session, session.begin():
        row = session.get(OutboundMessage, row_id)
        event = session.get(Event, row.event_id) if row else None
        if row is None or event is None:
            return
        calendar = Calendar()
        calendar.add("prodid", "-//naive//EN")
        calendar.add("version", "2.0")
        calendar.add("method", "REQUEST")
        vevent = CalendarEvent()
        vevent.add("uid", event.ics_uid)
        vevent.add("summary", event.title)
        vevent.add("dtstart", event.starts_at)
        vevent.add("dtend", event.ends_at)
        vevent.add("location", f"{event.venue_name}, {event.venue_address}, {event.venue_city}")
        vevent.add("description", event.description)
        vevent.add("attendee", f"mailto:{row.to_address}")
        calendar.add_component(vevent)
        message = EmailMessage()
        message["From"] = settings.sender
        message["To"] = row.to_address
        message["Subject"] = f"Uitnodiging: {event.title}"
        message["Message-ID"] = row.message_id
        message.set_content(
            f"Beste {row.to_address},\n\nU bent uitgenodigd voor {event.title}.\n{event.description}"
        )
        message.add_alternative(
            f"<p>U bent uitgenodigd voor <b>{event.title}</b>.</p><p>{event.description}</p>", subtype="html"
        )
        message.add_attachment(calendar.to_ical(), maintype="text", subtype="calendar", filename="invite.ics")
        target = settings.smtp
        assert target is not None
        with smtplib.SMTP(target.host, target.port) as smtp:
            smtp.send_message(message)
        row.status = MessageStatus.SENT
        row.sent_at = row.updated_at = datetime.now(UTC)


def run_naive(settings: Settings, env: dict[str, str], tmp: Path, messages: int) -> dict[str, float]:
    prepare(settings.resolved_database_url, messages)
    engine = db.make_engine(settings.resolved_database_url)
    factory = db.session_factory(engine)
    campaign = campaigns.start_campaign(
        factory, SLUG, "invitation", settings, TemplateSet(), datetime.now(UTC)
    )
    log = tmp / "naive.log"
    command = [sys.executable, "-m", "celery", "-A", "bench.deliver:naive", "worker", "--concurrency=2"]
    command += [
        "--loglevel=INFO",
        "--without-mingle",
        "--without-gossip",
        "--without-heartbeat",
        "--hostname=naive@%h",
    ]
    with process(command, env, log) as worker:
        wait_for_log(log, "ready.")
        naive.conf.update(broker_url=settings.redis_url, task_default_queue=settings.queue)
        started = datetime.now(UTC)
        for ids in campaigns.queued_ids(factory, campaign.scope):
            for row_id in ids:
                naive_send.delay(row_id)
        elapsed = wait_until_final(factory, campaign.total, worker, log, started)
        peak = peak_rss_mib(worker.pid)
    engine.dispose()
    return {"seconds": elapsed, "messages": campaign.total, "peak_mib": peak}


def message_size(settings: Settings) -> int:
    """The size of the campaign's first message as composed (the invitations differ by a few bytes)."""
    engine = db.make_engine(settings.resolved_database_url)
    with db.session_factory(engine)() as session:
        row = session.scalars(select(OutboundMessage).order_by(OutboundMessage.id).limit(1)).one()
        event, recipient = session.get_one(Event, row.event_id), session.get_one(Recipient, row.recipient_id)
        invitation = session.get_one(Invitation, row.invitation_id)
        composer = composer_for(settings, event, row.kind, TemplateSet(), datetime.now(UTC))
        size = len(composer.compose(recipient, invitation, row.language).data)
    engine.dispose()
    return size


def run_c_client(port: int, messages: int, size: int, sessions: int) -> dict[str, float]:
    """Postfix's smtp-source, a C SMTP client, sending `messages` of `size` bytes over `sessions`
    connections into the same sink: what this machine can do at all for such messages."""
    source = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    started = time.perf_counter()
    options = ["-s", str(sessions), "-m", str(messages), "-l", str(size)]
    addresses = ["-f", "bench@example.org", "-t", "sink@example.org"]
    subprocess.run([source, *options, *addresses, f"127.0.0.1:{port}"], check=True)
    return {"seconds": time.perf_counter() - started, "messages": messages}


def environment(tmp: Path, database_url: str = "") -> tuple[Settings, dict[str, str], int]:
    """Settings for a benchmark run in `tmp` (its own Redis, queue and SMTP port), and the environment
    that gives a worker process the same settings."""
    port = free_port()
    settings = Settings(
        database_url=database_url or f"sqlite:///{tmp / 'bench.db'}",
        redis_url=embedded.ensure_running(tmp / "redis"),
        smtp_url=f"smtp://127.0.0.1:{port}",
        var_dir=tmp / "var",
        secret_key="bench-secret",
        queue=f"bench-{uuid.uuid4().hex[:6]}",
    )
    env = {
        **os.environ,
        "INVITES_DATABASE_URL": settings.database_url,
        "INVITES_REDIS_URL": settings.redis_url,
        "INVITES_SMTP_URL": settings.smtp_url,
        "INVITES_VAR_DIR": str(settings.var_dir),
        "INVITES_SECRET_KEY": settings.secret_key,
        "INVITES_QUEUE": settings.queue,
    }
    return settings, env, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--naive", type=int, default=2_000, help="messages for the naive pattern")
    parser.add_argument(
        "--processes", type=int, default=2, help="worker processes (`invites worker --concurrency`)"
    )
    parser.add_argument("--database-url", default="", help="default: a SQLite file in a temporary folder")
    args = parser.parse_args()
    sink = smtp_sink_binary()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        settings, env, port = environment(tmp, args.database_url)
        os.environ.update(env)  # this process enqueues through the same Celery app as the workers
        try:
            # smtp-sink: accept everything, a backlog of 1024; as root it must drop to another user.
            sink_args = [sink, "-u", "nobody", f"127.0.0.1:{port}", "1024"]
            with process(sink_args, log=tmp / "smtp-sink.log") as sink_process:
                others = {
                    "smtp-sink": sink_process.pid,
                    "redis": int((tmp / "redis" / "redis" / "redis.pid").read_text().strip()),
                }
                small = run_pipeline(
                    settings, env, tmp, max(args.recipients // 10, 1), others, args.processes
                )
                ours = run_pipeline(settings, env, tmp, args.recipients, others, args.processes)
                size = message_size(settings)
                ceiling = run_c_client(port, args.recipients, size, settings.smtp_connections)
                theirs = run_naive(settings, env, tmp, args.naive)
        finally:
            embedded.stop(tmp / "redis")
    _print_report(ours, small, ceiling, size, theirs, args.processes, settings.smtp_connections)


def _print_report(
    ours: dict[str, float],
    small: dict[str, float],
    ceiling: dict[str, float],
    size: int,
    theirs: dict[str, float],
    processes: int,
    connections: int,
) -> None:
    """Print the rates of the pipeline, the C client and the naive pattern, and how they compare."""
    rate = ours["messages"] / ours["seconds"]
    naive_rate = theirs["messages"] / theirs["seconds"]
    print(
        f"deliver end to end: {ours['messages']:,.0f} messages in {ours['seconds']:.1f} s = "
        f"{rate:,.0f} msg/s with {processes} worker processes "
        f"(goal 2,000); worker peak RSS {ours['peak_mib']:.0f} MiB, and {small['peak_mib']:.0f} MiB for "
        f"{small['messages']:,.0f} messages"
    )
    per_message = {
        name.removeprefix("cpu "): seconds / ours["messages"] * 1e6
        for name, seconds in ours.items()
        if name.startswith("cpu ")
    }
    print(
        "CPU per message: "
        + ", ".join(f"{name} {micros:,.0f} µs" for name, micros in per_message.items())
        + f"; {sum(per_message.values()):,.0f} µs in all, "
        f"{sum(per_message.values()) * rate / 1e6:.2f} of the machine's {os.cpu_count()} cores busy"
    )
    c_rate = ceiling["messages"] / ceiling["seconds"]
    print(
        f"C client (Postfix's smtp-source, {connections} connections, the same sink): "
        f"{ceiling['messages']:,.0f} messages of {size:,} bytes in {ceiling['seconds']:.1f} s = "
        f"{c_rate:,.0f} msg/s, the ceiling on this machine; end to end reaches {rate / c_rate:.0%} of it"
    )
    print(
        f"naive (a task, an EmailMessage + icalendar and a new SMTP connection per message): "
        f"{theirs['messages']:,.0f} messages in {theirs['seconds']:.1f} s = {naive_rate:,.0f} msg/s; "
        f"peak RSS {theirs['peak_mib']:.0f} MiB"
    )
    print(f"ratio: {rate / naive_rate:.1f}x")


if __name__ == "__main__":
    main()
