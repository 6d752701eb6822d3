"""`invites demo`: the whole service on embedded defaults, for a newcomer's first five minutes."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from datetime import UTC, datetime

from rich.console import Console
from sqlalchemy import select

from invites import db
from invites.adapters import embedded
from invites.adapters.embedded import broker_url
from invites.cli.processes import start_worker, stop_process
from invites.cli.serving import uvicorn_options
from invites.cli.terminal import fail, wait_for_delivery
from invites.db.models import Invitation
from invites.domain.eventfile import parse_event_file
from invites.domain.tokens import make_token
from invites.readmodels.status import event_status
from invites.runtime import Runtime
from invites.services import accounts, campaigns
from invites.services.events import get_event, load_event
from invites.services.imports import import_list
from invites.settings import project_dir

EVENT_FILE = "lokaal-samenspel-2018.toml"
AUDIENCE_FILE = "audience-utrecht.csv"


DEMO_ORGANISER = "organisator@example.org"


def demo_organiser(runtime: Runtime, now: datetime) -> str:
    """The demo's organiser account, with a new random password each run (printed, never stored)."""
    password = secrets.token_urlsafe(12)
    with db.transaction(runtime.sessions) as session:
        user = accounts.find_user(session, DEMO_ORGANISER)
        if user is None:
            accounts.add_user(session, DEMO_ORGANISER, password, now, name="Organisator (demo)")
        else:
            accounts.set_password(session, user, password, now)
    return password


def run_demo(
    runtime: Runtime, *, once: bool, host: str, port: int, console: Console, timeout: float = 300
) -> None:
    """Load the example event and audience, send the invitation through a real worker, print where to
    look, and (unless `once`) serve the web app with beat running until Ctrl-C. Stops what it started."""
    settings = runtime.settings
    now = datetime.now(UTC)
    console.rule("invites demo")
    slug = load_example(runtime, now, console)
    password = demo_organiser(runtime, now)
    env = {**os.environ, "INVITES_REDIS_URL": broker_url(settings)}
    env.setdefault("INVITES_VAR_DIR", str(settings.var_dir.resolve()))
    env.setdefault("INVITES_DATABASE_URL", settings.resolved_database_url)
    worker = start_worker(env)
    beat: subprocess.Popen[bytes] | None = None
    try:
        counts = deliver_invitations(runtime, slug, worker, now, timeout)
        show_where_to_look(runtime, slug, counts, f"http://{host}:{port}", password, console)
        if once:
            return
        beat = subprocess.Popen(
            [sys.executable, "-m", "invites.cli.main", "beat", "--loglevel=WARNING"], env=env
        )
        # Loaded only to serve, as `invites serve` does, so every other command starts without the web app.
        import uvicorn

        from invites.web.app import create_app

        # Built before the line is printed: a link opened right after it must find the app being served.
        app = create_app(runtime)
        console.print("serving; press Ctrl-C to stop")
        uvicorn.run(app, host=host, port=port, **uvicorn_options(settings), log_level="warning")
    finally:
        if beat is not None:
            stop_process(beat)
        stop_process(worker)
        if not settings.redis_url:
            # The demo started the embedded Redis; leave nothing running behind it.
            embedded.stop(settings.var_dir)


def load_example(runtime: Runtime, now: datetime, console: Console) -> str:
    """The example event and its audience, loaded into the database (again: loading twice changes nothing
    but the times); returns the event's slug."""
    db.upgrade(runtime.engine)
    examples = project_dir("examples")
    spec = parse_event_file((examples / EVENT_FILE).read_bytes(), EVENT_FILE, runtime.municipalities)
    with db.transaction(runtime.sessions) as session:
        slug = load_event(session, spec, now).event.slug
        report = import_list(
            session,
            get_event(session, slug),
            (examples / AUDIENCE_FILE).read_bytes(),
            AUDIENCE_FILE,
            now,
            places=runtime.municipalities,
        )
    console.print(
        f"event [bold]{slug}[/] loaded; audience: {report.accepted} added, {report.updated} updated"
    )
    return slug


def deliver_invitations(
    runtime: Runtime, slug: str, worker: subprocess.Popen[bytes], now: datetime, timeout: float
) -> dict[str, int]:
    """Send the invitation as an organiser would (campaigns.send_campaign) and wait for the worker."""
    settings = runtime.settings
    sent = campaigns.send_campaign(
        runtime.sessions,
        slug,
        "invitation",
        settings,
        runtime.templates,
        runtime.enqueue,
        now,
        allow_empty=True,
    )
    assert sent.started is not None  # not a dry run: a campaign was started
    counts = wait_for_delivery(runtime, sent.started.scope, timeout, quiet=False)
    if worker.poll() is not None:
        raise fail(f"the worker exited with {worker.returncode}")
    return counts


def show_where_to_look(
    runtime: Runtime, slug: str, counts: dict[str, int], base: str, password: str, console: Console
) -> None:
    settings = runtime.settings
    with runtime.sessions() as session:
        event = get_event(session, slug)
        status = event_status(session, event)
        first = session.scalar(
            select(Invitation).where(Invitation.event_id == event.id).order_by(Invitation.id)
        )
    console.print(
        f"delivered: {counts['sent']} sent, {counts['failed']} failed, of {counts['total']} "
        f"(invited {status['invited']})"
    )
    console.print(f"outbox folder: {settings.outbox_dir.resolve()}")
    console.print(f"sign in:       {base}/login as {DEMO_ORGANISER} with password {password}")
    console.print(f"dashboard:     {base}/events/{slug}")
    console.print(f"outbox:        {base}/outbox")
    if first is not None:
        token = make_token(settings.secret_key, first.public_id, first.token_version)
        console.print(f"an RSVP link:  {base}/r/{token}")
