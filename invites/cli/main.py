"""The `invites` command. Each command parses its arguments, calls a service, and prints the result."""

from __future__ import annotations

import getpass
import json
import signal as signals
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
import uvicorn
from aiosmtpd.controller import Controller
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from invites import db
from invites.adapters.embedded import broker_url
from invites.cli.demo import run_demo
from invites.cli.processes import exec_celery
from invites.cli.serving import uvicorn_options
from invites.cli.terminal import err, fail, out, wait_for_delivery
from invites.cli.users import user_app
from invites.db.segments import coverage
from invites.domain.audience import ENCODINGS
from invites.domain.errors import InputError, NotFound
from invites.domain.eventfile import parse_event_file
from invites.domain.segment import Segment
from invites.messages.compose import composer_for
from invites.readmodels.exports import export_bytes
from invites.readmodels.status import event_status
from invites.runtime import Runtime
from invites.services import campaigns, reminders, testsend
from invites.services.bounces import InboundHandler
from invites.services.cancellation import cancel_event
from invites.services.events import find_invitee, get_event, load_event
from invites.services.imports import import_stream, limits_from
from invites.services.privacy import export_person, forget_person, purge_expired
from invites.services.replies import ReplyHandler
from invites.services.rsvp import revoke
from invites.services.suppression import suppress
from invites.settings import Settings, UnfitForProduction

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


def now() -> datetime:
    return datetime.now(UTC)


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
        spec = parse_event_file(path.read_bytes(), str(path), runtime.municipalities)
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
    sheet: Annotated[str | None, typer.Option(help="the Excel sheet to read (default: the first)")] = None,
    encoding: Annotated[
        str | None,
        typer.Option(help="a CSV file's encoding: utf-8, utf-16, cp1252, … (default: detected)"),
    ] = None,
) -> None:
    """Import a recipient list (CSV or Excel) into an event's audience."""
    runtime = Runtime.current()
    try:
        size = path.stat().st_size
        with (
            db.transaction(runtime.sessions) as session,
            path.open("rb") as stream,
            Progress(
                TextColumn("[bold]importing"),
                BarColumn(),
                DownloadColumn(),
                TimeRemainingColumn(),
                console=err,
                disable=as_json or not err.is_terminal,
                transient=True,
            ) as bar,
        ):
            task = bar.add_task("import", total=size)
            report = import_stream(
                session,
                get_event(session, event),
                stream,
                str(path),
                size,
                now(),
                strict=strict,
                sheet=sheet,
                encoding=encoding,
                max_bytes=runtime.settings.import_max_bytes,
                match_place=runtime.municipalities.match,
                limits=limits_from(runtime.settings),
                progress=lambda _rows: bar.update(task, completed=stream.tell()),
            )
    except NotFound as exc:
        raise fail(str(exc)) from exc
    except OSError as exc:
        raise fail(f"{path}: {exc.strerror or exc}") from exc
    except InputError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        out.print_json(json.dumps(report.as_dict(), ensure_ascii=False))
        return
    out.print(
        f"{report.accepted} added, {report.updated} updated, {report.duplicates} duplicates, "
        f"{report.suppressed} suppressed, {report.rejected_count} rejected"
    )
    if report.encoding:
        how = "chosen" if report.encoding_chosen else "detected"
        out.print(f"  encoding: {ENCODINGS.get(report.encoding, report.encoding)} ({how})", highlight=False)
    for rejection in report.rejected:
        out.print(
            f"  line {rejection.line}, column {rejection.column!r}: {rejection.reason}", highlight=False
        )
    if report.rejected_count > len(report.rejected):
        out.print(f"  … and {report.rejected_count - len(report.rejected)} more rejected", highlight=False)
    for warning in report.warnings:
        out.print(f"  warning: {warning}", highlight=False)
    if report.warning_count > len(report.warnings):
        out.print(f"  … and {report.warning_count - len(report.warnings)} more warnings", highlight=False)


RoleOption = Annotated[list[str] | None, typer.Option("--role", help="only this role (repeatable)")]
PlaceOption = Annotated[
    list[str] | None, typer.Option("--municipality", help="only this municipality, by name or CBS code")
]
TagOption = Annotated[list[str] | None, typer.Option("--tag", help="only recipients with this tag")]
LanguageOption = Annotated[list[str] | None, typer.Option("--language", help="only this language (nl, en)")]
AttendedOption = Annotated[
    bool, typer.Option("--attended-previous", help="only who accepted an earlier meeting of the series")
]


def segment_from(
    roles: list[str] | None,
    places: list[str] | None,
    tags: list[str] | None,
    languages: list[str] | None,
    attended: bool,
) -> Segment:
    try:
        return Segment.parse(
            roles or [], places or [], tags or [], languages or [], attended, Runtime.current().municipalities
        )
    except InputError as exc:
        raise fail(str(exc)) from exc


@app.command("audience")
def audience_command(
    slug: str,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    role: RoleOption = None,
    municipality: PlaceOption = None,
    tag: TagOption = None,
    language: LanguageOption = None,
    attended_previous: AttendedOption = False,
) -> None:
    """The coverage matrix: recipients per municipality and role (invited, and accepted)."""
    segment = segment_from(role, municipality, tag, language, attended_previous)
    runtime = Runtime.current()
    with runtime.sessions() as session:
        try:
            matrix = coverage(session, get_event(session, slug), segment, runtime.municipalities)
        except NotFound as exc:
            raise fail(str(exc)) from exc
    if as_json:
        out.print_json(json.dumps(matrix, ensure_ascii=False))
        return
    table = Table(title=f"{slug}: invited (accepted)")
    table.add_column("gemeente")
    for key in matrix["roles"]:
        table.add_column(key, justify="right")
    table.add_column("total", justify="right")
    for row in [
        *matrix["municipalities"],
        {"name": "total", "roles": matrix["totals"], "total": matrix["totals"]["all"]},
    ]:
        cells = [row["roles"][key] for key in matrix["roles"]]
        table.add_row(
            row["name"],
            *(f"{c['invited']} ({c['accepted']})" if c["invited"] else "·" for c in cells),
            f"{row['total']['invited']} ({row['total']['accepted']})",
        )
    out.print(table)


@app.command("export")
def export_command(
    slug: str,
    output: Annotated[Path, typer.Option("--output", "-o", help="the file to write (.csv or .xlsx)")],
    role: RoleOption = None,
    municipality: PlaceOption = None,
    tag: TagOption = None,
    language: LanguageOption = None,
    attended_previous: AttendedOption = False,
) -> None:
    """Export the audience with its answers to CSV or Excel; formulas in cells are neutralised."""
    segment = segment_from(role, municipality, tag, language, attended_previous)
    fmt = output.suffix.lower().lstrip(".")
    if fmt not in ("csv", "xlsx"):
        raise fail(f"{output}: the name must end in .csv or .xlsx")
    runtime = Runtime.current()
    with runtime.sessions() as session:
        try:
            data = export_bytes(session, get_event(session, slug), fmt, segment, runtime.municipalities)
        except NotFound as exc:
            raise fail(str(exc)) from exc
    output.write_bytes(data)
    out.print(f"wrote {output}")


@app.command("suppress")
def suppress_command(
    address: str,
    reason: Annotated[str, typer.Option(help="unsubscribed, hard-bounce, erased or organiser")] = "organiser",
) -> None:
    """Never invite this address again; later imports report it as suppressed."""
    runtime = Runtime.current()
    try:
        with db.transaction(runtime.sessions) as session:
            added = suppress(session, address, reason, now())
    except ValueError as exc:
        raise fail(str(exc)) from exc
    out.print(f"{address}: {'suppressed' if added else 'was already suppressed'}", highlight=False)


@app.command("send")
def send(
    slug: str,
    kind: Annotated[str, typer.Option(help="the message to send")] = "invitation",
    wait: Annotated[bool, typer.Option(help="wait until every message is delivered")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait with --wait")] = 600,
    test_to: Annotated[
        str | None,
        typer.Option("--test-to", help="send one test message, for a made-up person, to this address only"),
    ] = None,
    lang: Annotated[str | None, typer.Option(help="nl or en, with --test-to")] = None,
    role: RoleOption = None,
    municipality: PlaceOption = None,
    tag: TagOption = None,
    language: LanguageOption = None,
    attended_previous: AttendedOption = False,
) -> None:
    """Send a message to the event's audience, or to a segment of it, through the workers (or, with
    --test-to, one test message straight to SMTP)."""
    runtime = Runtime.current()
    if test_to:
        send_test(runtime, slug, kind, test_to, lang)
        return
    segment = segment_from(role, municipality, tag, language, attended_previous)
    try:
        sent = campaigns.send_campaign(
            runtime.sessions,
            slug,
            kind,
            runtime.settings,
            runtime.templates,
            runtime.enqueue,
            now(),
            segment,
            allow_empty=True,
        )
    except InputError as exc:
        raise fail(str(exc)) from exc
    started = sent.started
    assert started is not None  # not a dry run: a campaign was started
    out.print(
        f"campaign {started.campaign_id}: {started.total} recipients, {sent.handed} queued for the workers"
    )
    if wait:
        counts = wait_for_delivery(runtime, started.scope, timeout, quiet=False)
        out.print(f"sent {counts['sent']}, failed {counts['failed']}, of {counts['total']}")


def send_test(runtime: Runtime, slug: str, kind: str, address: str, lang: str | None) -> None:
    """One test message for a made-up person, straight to SMTP: see invites.services.testsend."""
    try:
        sent = testsend.send_test(
            runtime.sessions, runtime.settings, runtime.templates, slug, kind, address, lang, now()
        )
    except (InputError, NotFound, testsend.NotSent) as exc:
        raise fail(str(exc)) from exc
    out.print(f"test {kind} sent to {sent.to} via {sent.via}: {sent.reply}", highlight=False)


@app.command("status")
def status(slug: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The counts: invited, sent, failed, and the answers."""
    runtime = Runtime.current()
    with runtime.sessions() as session:
        try:
            counts = event_status(session, get_event(session, slug))
        except NotFound as exc:
            raise fail(str(exc)) from exc
        counts["campaigns"] = [
            campaigns.campaign_progress(session, campaign_id, now())
            for campaign_id in campaigns.campaigns_of(session, get_event(session, slug).id)
        ]
    if as_json:
        out.print_json(json.dumps(counts, ensure_ascii=False))
        return
    for key, value in counts.items():
        if key != "campaigns":
            out.print(f"{key:>10}  {value}", highlight=False)
    for c in counts["campaigns"]:
        left = "?" if c["seconds_left"] is None else f"{c['seconds_left']}s"
        out.print(
            f"campaign {c['campaign']} ({c['kind']}, {c['state']}): {c['sent']} sent of {c['total']}, "
            f"{c['failed']} failed, {c['deferred']} deferred, {c['cancelled']} cancelled; "
            f"{c['rate']}/s, {left} left",
            highlight=False,
        )


campaign_app = typer.Typer(help="Pause, resume or cancel a campaign.", no_args_is_help=True)
app.add_typer(campaign_app, name="campaign")


@campaign_app.command("pause")
def campaign_pause(campaign_id: int) -> None:
    """Stop sending a campaign's remaining messages until it is resumed."""
    runtime = Runtime.current()
    try:
        campaigns.pause_campaign(runtime.sessions, campaign_id, now())
    except (InputError, NotFound) as exc:
        raise fail(str(exc)) from exc
    out.print(f"campaign {campaign_id} paused")


@campaign_app.command("resume")
def campaign_resume(campaign_id: int) -> None:
    """Go on sending a paused campaign."""
    runtime = Runtime.current()
    try:
        handed = campaigns.resume_campaign(
            runtime.sessions, campaign_id, runtime.enqueue, runtime.settings.batch_size, now()
        )
    except (InputError, NotFound) as exc:
        raise fail(str(exc)) from exc
    out.print(f"campaign {campaign_id} resumed; {handed} messages queued for the workers")


@campaign_app.command("cancel")
def campaign_cancel(campaign_id: int) -> None:
    """Cancel a campaign for good: its messages not yet sent are never sent."""
    runtime = Runtime.current()
    try:
        cancelled = campaigns.cancel_campaign(runtime.sessions, campaign_id, now())
    except (InputError, NotFound) as exc:
        raise fail(str(exc)) from exc
    out.print(f"campaign {campaign_id} cancelled; {cancelled} messages will not be sent")


bounces_app = typer.Typer(help="Bounces: delivery status notifications.", no_args_is_help=True)
app.add_typer(bounces_app, name="bounces")


@bounces_app.command("poll")
def bounces_poll() -> None:
    """Read the bounce mailbox (INVITES_BOUNCE_IMAP_URL) once."""
    runtime = Runtime.current()
    if not runtime.settings.bounce_imap_url:
        raise fail("INVITES_BOUNCE_IMAP_URL is not set")
    out.print(f"{runtime.poll_bounces(now())} messages read")


@bounces_app.command("serve")
def bounces_serve(host: str = "127.0.0.1", port: int = 2525) -> None:
    """Receive bounces over SMTP (aiosmtpd) at the VERP addresses, until Ctrl-C."""
    runtime = Runtime.current()
    handler = InboundHandler(runtime.sessions, runtime.settings.secret_key, now)
    controller = Controller(handler, hostname=host, port=port, decode_data=False)
    controller.start()
    out.print(f"receiving bounces on {host}:{port}; press Ctrl-C to stop", highlight=False)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


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
            recipient, invitation = find_invitee(session, event, to)
            composer = composer_for(runtime.settings, event, kind, runtime.templates, now())
            composed = composer.compose(recipient, invitation, lang)
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
    Runtime.current()  # refuses to start in production with development settings
    exec_celery("worker", f"--concurrency={concurrency}", f"--loglevel={loglevel}", *ctx.args)


@app.command("beat", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def beat(ctx: typer.Context, loglevel: str = "INFO") -> None:
    """Run Celery beat, which triggers the periodic sweeps. Run exactly one."""
    settings = Runtime.current().settings
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    schedule = settings.var_dir / "celerybeat-schedule"
    exec_celery("beat", f"--loglevel={loglevel}", f"--schedule={schedule}", *ctx.args)


@app.command("serve")
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Run the web app (RSVP pages, status, outbox) under uvicorn; X-Forwarded-For is believed only from
    INVITES_TRUSTED_PROXIES."""
    settings = Runtime.current().settings  # refuses to start in production with development settings
    uvicorn.run(
        "invites.web.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        **uvicorn_options(settings),
    )


@app.command("demo")
def demo(
    once: Annotated[bool, typer.Option(help="exit once everything is delivered")] = False,
    host: str = "127.0.0.1",
    port: int = 8000,
) -> None:
    """Load the example event, import the sample audience, send through a real worker, and serve."""
    run_demo(Runtime.current(), once=once, host=host, port=port, console=out)


@app.command("redis-url", hidden=True)
def redis_url() -> None:
    """Print the broker URL, starting the embedded Redis if none is configured."""
    out.print(broker_url(Runtime.current().settings), highlight=False)


replies_app = typer.Typer(help="Calendar replies (Accept/Decline pressed in Outlook, Gmail, Apple).")
app.add_typer(replies_app, name="replies")


@replies_app.command("serve")
def replies_serve(host: str = "127.0.0.1", port: int = 2526) -> None:
    """Run the inbound SMTP endpoint that records calendar replies; forward the organiser's mail to it."""
    runtime = Runtime.current()
    stop = {signals.SIGINT, signals.SIGTERM}
    # Blocked before the server's thread starts, so only this thread receives them, in sigwait.
    signals.pthread_sigmask(signals.SIG_BLOCK, stop)
    handler = ReplyHandler(runtime.sessions, now, runtime.settings, runtime.enqueue)
    controller = Controller(handler, hostname=host, port=port)
    controller.start()
    out.print(f"recording calendar replies sent to smtp://{host}:{port}; Ctrl-C stops")
    _warn_untrusted(runtime.settings, "only replies with a valid DKIM signature of the sender's domain count")
    try:
        signals.sigwait(stop)
    finally:
        controller.stop()


@replies_app.command("poll")
def replies_poll() -> None:
    """Read the organiser's inbox (INVITES_REPLY_IMAP_URL) once; beat does this every two minutes."""
    runtime = Runtime.current()
    if not runtime.settings.reply_imap_url:
        raise fail("INVITES_REPLY_IMAP_URL is not set")
    _warn_untrusted(runtime.settings, "every reply read is held for the organiser")
    out.print(f"{runtime.poll_replies(now())} messages read")


def _warn_untrusted(settings: Settings, consequence: str) -> None:
    if not settings.trusted_authserv_ids:
        out.print(
            f"  warning: INVITES_REPLY_AUTHSERV_IDS is not set, so no Authentication-Results is trusted: "
            f"{consequence}",
            highlight=False,
        )


person_app = typer.Typer(help="A person's data (AVG/GDPR): export it, or erase it.", no_args_is_help=True)
app.add_typer(person_app, name="person")
retention_app = typer.Typer(help="Retention of personal data.", no_args_is_help=True)
app.add_typer(retention_app, name="retention")
ActorOption = Annotated[str, typer.Option("--by", help="who asks, for the audit log")]


def _actor(by: str) -> str:
    """--by, else the operating-system user (a container's uid may have no name)."""
    try:
        return by or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@person_app.command("export")
def person_export(
    email: str,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="file to write (default: stdout)")
    ] = None,
    by: ActorOption = "",
) -> None:
    """Everything stored about the person at EMAIL, as JSON; the export is written to the audit log."""
    runtime = Runtime.current()
    with db.transaction(runtime.sessions) as session:
        data = export_person(session, email, now(), _actor(by))
    text = json.dumps(data, ensure_ascii=False, indent=2)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
        err.print(f"wrote {output}", highlight=False)
    else:
        sys.stdout.write(text + "\n")


@person_app.command("forget")
def person_forget(email: str, by: ActorOption = "") -> None:
    """Erase the person at EMAIL everywhere, keeping only anonymous counts, and never invite them again."""
    runtime = Runtime.current()
    with db.transaction(runtime.sessions) as session:
        erased = forget_person(session, email, now(), _actor(by))
    what = f"{erased.invitations} invitations, {erased.messages} messages" if erased.found else "no recipient"
    out.print(f"{email}: erased ({what}); suppressed by its hash", highlight=False)


@retention_app.command("purge")
def retention_purge(
    at: Annotated[
        datetime | None, typer.Option("--at", help="the moment to purge as of (ISO 8601; default: now)")
    ] = None,
    days: Annotated[int | None, typer.Option(help="default: INVITES_RETENTION_DAYS")] = None,
) -> None:
    """Erase the personal data of recipients whose last event ended more than N days ago."""
    runtime = Runtime.current()
    moment = now() if at is None else (at if at.tzinfo else at.replace(tzinfo=UTC))
    keep = runtime.settings.retention_days if days is None else days
    with db.transaction(runtime.sessions) as session:
        purged = purge_expired(session, moment, keep)
    out.print(
        f"{purged} recipients purged (retention {keep} days, as of {moment.isoformat()})", highlight=False
    )


reminders_app = typer.Typer(help="Reminder rules: who would get what, and the sweep.", no_args_is_help=True)
app.add_typer(reminders_app, name="reminders")
AtOption = Annotated[
    str | None,
    typer.Option("--at", help="the moment, ISO 8601 (without an offset: Europe/Amsterdam); default: now"),
]


def moment(at: str | None) -> datetime:
    """--at as an aware moment: an ISO date and time, local to Europe/Amsterdam unless it has an offset."""
    if at is None:
        return now()
    try:
        parsed = datetime.fromisoformat(at)
    except ValueError as exc:
        raise fail(f"--at {at!r} is not an ISO date and time such as 2018-02-06T10:00") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=ZoneInfo("Europe/Amsterdam"))


@reminders_app.command("due")
def reminders_due(
    slug: str, at: AtOption = None, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """List the event's rules and who would be sent which reminder by a sweep at --at (nothing is sent)."""
    runtime = Runtime.current()
    when = moment(at)
    with runtime.sessions() as session:
        try:
            event = get_event(session, slug)
        except NotFound as exc:
            raise fail(str(exc)) from exc
        zone = ZoneInfo(event.timezone)
        rules = [
            reminders.describe_rule(rule, event, runtime.settings, when)
            for rule in reminders.event_rules(session, event)
        ]
        due = [
            item.as_dict(zone) for item in reminders.due_reminders(session, when, runtime.settings, event.id)
        ]
    if as_json:
        report = {"event": slug, "at": when.astimezone(zone).isoformat(), "rules": rules, "due": due}
        out.print_json(json.dumps(report))
        return
    for rule in rules:
        out.print(f"{rule['name']}: {rule['state']} (sends from {rule['send_from']})", highlight=False)
    for item in due:
        out.print(f"{item['rule']}\t{item['template']}\t{item['email']}", highlight=False)
    out.print(f"{len(due)} due at {when.astimezone(zone).isoformat()}", highlight=False)


@reminders_app.command("run")
def reminders_run(at: AtOption = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Run the reminder sweep as of --at: queue every due reminder once and hand it to the workers."""
    runtime = Runtime.current()
    result = reminders.sweep_reminders(runtime.sessions, runtime.enqueue, moment(at), runtime.settings)
    failed = [{"event": f.event, "rule": f.rule, "error": f.error} for f in result.failed]
    if as_json:
        out.print_json(
            json.dumps(
                {"due": result.due, "created": result.created, "enqueued": result.enqueued, "failed": failed}
            )
        )
        return
    for each in failed:
        out.print(f"rule {each['rule']!r} of {each['event']!r} not used: {each['error']}", highlight=False)
    out.print(f"{result.created} reminders queued for the workers", highlight=False)


@event_app.command("cancel")
def event_cancel(
    slug: str, reason: Annotated[str, typer.Option(help="why; the message and the RSVP page say it")] = ""
) -> None:
    """Cancel the event: every calendar drops it (METHOD:CANCEL), no reminder or other message goes out."""
    runtime = Runtime.current()
    try:
        result = cancel_event(
            runtime.sessions, slug, reason, runtime.settings, runtime.templates, runtime.enqueue, now()
        )
    except InputError as exc:
        raise fail(str(exc)) from exc
    out.print(
        f"cancelled {slug}: campaign {result.campaign.campaign_id}: {result.campaign.total} cancellations, "
        f"{result.enqueued} queued for the workers; {result.stopped} unsent messages stopped",
        highlight=False,
    )


rsvp_app = typer.Typer(help="Personal RSVP links.", no_args_is_help=True)
app.add_typer(rsvp_app, name="rsvp")
app.add_typer(user_app, name="user")


@rsvp_app.command("revoke")
def rsvp_revoke(slug: str, address: str) -> None:
    """Make every link sent so far to this invitee a dead end; the next message carries a new one."""
    runtime = Runtime.current()
    try:
        with db.transaction(runtime.sessions) as session:
            _, invitation = find_invitee(session, get_event(session, slug), address)
            revoke(session, invitation)
    except NotFound as exc:
        raise fail(str(exc)) from exc
    out.print(f"{address}: earlier links to {slug} no longer work", highlight=False)


def main() -> Any:
    try:
        return app()
    except UnfitForProduction as exc:
        # Raised where the settings are first read, outside any one command.
        fail(str(exc))
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()
