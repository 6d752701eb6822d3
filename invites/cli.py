"""The `invites` command. Each command parses its arguments, calls a service, and prints the result."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import select

from invites import campaigns, db
from invites.compose import Composer
from invites.errors import InputError, NotFound
from invites.eventfile import parse_event_file
from invites.events import get_event, load_event
from invites.imports import import_list
from invites.models import Invitation, Recipient
from invites.runtime import Runtime, broker_url
from invites.status import event_status

app = typer.Typer(
    help="Email and calendar invitations with RSVP.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
event_app = typer.Typer(help="Events.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(event_app, name="event")

out = Console()
err = Console(stderr=True)


def now() -> datetime:
    return datetime.now(UTC)


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the migrations up to REVISION (default: the newest)."""
    runtime = Runtime.current()
    engine = db.make_engine(runtime.settings.resolved_database_url)
    db.upgrade(engine, revision)
    out.print(f"database at {revision}: {engine.url.render_as_string(hide_password=True)}", highlight=False)


@db_app.command("downgrade")
def db_downgrade(revision: str) -> None:
    """Undo migrations down to REVISION ("base" empties the database)."""
    engine = db.make_engine(Runtime.current().settings.resolved_database_url)
    db.downgrade(engine, revision)
    out.print(f"database at {revision}")


@event_app.command("load")
def event_load(path: Path) -> None:
    """Create or update the event defined in an event file (TOML); prints its slug."""
    runtime = Runtime.current()
    try:
        spec = parse_event_file(path.read_bytes(), str(path))
        with db.transaction(runtime.sessions) as session:
            result = load_event(session, spec, now())
            slug = result.event.slug
            changes = result.calendar_changes
    except (InputError, OSError) as exc:
        raise fail(str(exc)) from exc
    if changes:
        err.print(f"changed: {', '.join(changes)} (calendar sequence raised)")
    out.print(slug, highlight=False)


@app.command("import")
def import_command(
    path: Path,
    event: Annotated[str, typer.Option("--event", help="slug of the event whose audience this is")],
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    strict: Annotated[bool, typer.Option(help="reject the whole file if any row is rejected")] = False,
) -> None:
    """Import a recipient list (CSV) into an event's audience."""
    runtime = Runtime.current()
    try:
        data = path.read_bytes()
        with db.transaction(runtime.sessions) as session:
            report = import_list(session, get_event(session, event), data, path.name, now(), strict=strict)
    except (InputError, NotFound, OSError) as exc:
        raise fail(f"{path}: {exc}" if not str(exc).startswith(str(path)) else str(exc)) from exc
    if as_json:
        out.print_json(json.dumps(report.as_dict(), ensure_ascii=False))
        return
    out.print(
        f"{report.accepted} added, {report.updated} updated, {report.duplicates} duplicates, "
        f"{report.suppressed} suppressed, {len(report.rejected)} rejected"
    )
    for rejection in report.rejected:
        out.print(
            f"  line {rejection.line}, column {rejection.column!r}: {rejection.reason}", highlight=False
        )
    for warning in report.warnings:
        out.print(f"  warning: {warning}", highlight=False)


def wait_for_delivery(
    runtime: Runtime, scope: campaigns.MessageScope, timeout: float, quiet: bool
) -> dict[str, int]:
    """Poll the database until every row of the message is sent or failed for good, or time runs out."""
    deadline = time.monotonic() + timeout
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=quiet,
        transient=False,
    ) as bar:
        task = bar.add_task("delivering", total=None)
        while True:
            with runtime.sessions() as session:
                counts = campaigns.progress(session, scope)
            bar.update(task, total=counts["total"], completed=counts["done"])
            if counts["done"] >= counts["total"]:
                return counts
            if time.monotonic() > deadline:
                raise fail(f"not delivered after {timeout:.0f}s: {counts}; is a worker running?")
            time.sleep(0.2)


@app.command("send")
def send(
    slug: str,
    kind: Annotated[str, typer.Option(help="the message to send")] = "invitation",
    wait: Annotated[bool, typer.Option(help="wait until every message is delivered")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait with --wait")] = 600,
) -> None:
    """Send a message to the event's audience through the workers."""
    runtime = Runtime.current()
    try:
        started = campaigns.start_campaign(
            runtime.sessions, slug, kind, runtime.settings, runtime.templates, now()
        )
    except InputError as exc:
        raise fail(str(exc)) from exc
    handed = campaigns.enqueue_queued(
        runtime.sessions, started.scope, runtime.enqueue, runtime.settings.batch_size
    )
    out.print(f"campaign {started.campaign_id}: {started.total} recipients, {handed} queued for the workers")
    if wait:
        counts = wait_for_delivery(runtime, started.scope, timeout, quiet=False)
        out.print(f"sent {counts['sent']}, failed {counts['failed']}, of {counts['total']}")


@app.command("status")
def status(slug: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The counts: invited, sent, failed, and the answers."""
    runtime = Runtime.current()
    with runtime.sessions() as session:
        try:
            counts = event_status(session, get_event(session, slug))
        except NotFound as exc:
            raise fail(str(exc)) from exc
    if as_json:
        out.print_json(json.dumps(counts, ensure_ascii=False))
        return
    for key, value in counts.items():
        out.print(f"{key:>10}  {value}", highlight=False)


@app.command("render")
def render_command(
    slug: str,
    to: Annotated[str, typer.Option("--to", help="the recipient's address")],
    kind: Annotated[str, typer.Option(help="the message kind")] = "invitation",
    lang: Annotated[str | None, typer.Option(help="nl or en (default: the recipient's)")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="file to write (default: stdout)")
    ] = None,
) -> None:
    """Write the exact RFC 5322 bytes that would be sent to one recipient."""
    runtime = Runtime.current()
    with runtime.sessions() as session:
        try:
            event = get_event(session, slug)
            row = session.execute(
                select(Recipient, Invitation)
                .join(Invitation, Invitation.recipient_id == Recipient.id)
                .where(Invitation.event_id == event.id, Recipient.email_key == to.strip().casefold())
            ).first()
            if row is None:
                raise NotFound(f"{to} is not invited to {slug}")
            composer = Composer(
                event,
                kind,
                runtime.templates,
                sender=runtime.settings.sender,
                base_url=runtime.settings.base_url,
                secret=runtime.settings.secret_key,
                now=now(),
            )
            composed = composer.compose(row[0], row[1], lang)
        except (InputError, NotFound) as exc:
            raise fail(str(exc)) from exc
    if output:
        output.write_bytes(composed.data)
    else:
        sys.stdout.buffer.write(composed.data)
        sys.stdout.buffer.flush()


@app.command("worker", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(ctx: typer.Context, concurrency: int = 2, loglevel: str = "INFO") -> None:
    """Run a Celery worker (extra options go to `celery worker`)."""
    from workers import app as celery_app

    celery_app.worker_main(["worker", f"--concurrency={concurrency}", f"--loglevel={loglevel}", *ctx.args])


@app.command("beat", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def beat(ctx: typer.Context, loglevel: str = "INFO") -> None:
    """Run Celery beat, which triggers the periodic sweeps. Run exactly one."""
    from workers import app as celery_app

    settings = Runtime.current().settings
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    schedule = settings.var_dir / "celerybeat-schedule"
    celery_app.start(["beat", f"--loglevel={loglevel}", f"--schedule={schedule}", *ctx.args])


@app.command("serve")
def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the web app (RSVP pages, status, outbox) under uvicorn."""
    import uvicorn

    from invites.web.app import create_app

    uvicorn.run(create_app(), host=host, port=port, log_level="info")


@app.command("demo")
def demo(
    once: Annotated[bool, typer.Option(help="exit once everything is delivered")] = False,
    host: str = "127.0.0.1",
    port: int = 8000,
) -> None:
    """Load the example event, import the sample audience, send through a real worker, and serve."""
    from invites.demo import run_demo

    run_demo(Runtime.current(), once=once, host=host, port=port, console=out)


@app.command("redis-url", hidden=True)
def redis_url() -> None:
    """Print the broker URL, starting the embedded Redis if none is configured."""
    out.print(broker_url(Runtime.current().settings), highlight=False)


def main() -> Any:
    return app()


if __name__ == "__main__":
    main()
