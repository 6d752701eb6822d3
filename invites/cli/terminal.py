"""What the `invites` command and the demo print: the consoles, the error that ends a command, and the
progress of a delivery."""

from __future__ import annotations

import time

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from invites.runtime import Runtime
from invites.services import campaigns

# soft_wrap: a long path or error stays on one line in logs, whatever the terminal's width.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def wait_for_delivery(
    runtime: Runtime, scope: campaigns.MessageScope, timeout: float, quiet: bool
) -> dict[str, int]:
    """Poll the database until every row of the message is sent or failed for good, or time runs out."""
    deadline = time.monotonic() + timeout
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>7.1f}/s"),
        TimeRemainingColumn(),
        console=err,
        disable=quiet,
        transient=False,
    ) as bar:
        task = bar.add_task("delivering", total=None, rate=0.0)
        began = time.monotonic()
        first: int | None = None
        while True:
            with runtime.sessions() as session:
                counts = campaigns.progress(session, scope)
            first = counts["done"] if first is None else first
            rate = (counts["done"] - first) / max(time.monotonic() - began, 1e-3)
            bar.update(task, total=counts["total"], completed=counts["done"], rate=rate)
            if counts["done"] >= counts["total"]:
                return counts
            if time.monotonic() > deadline:
                raise fail(f"not delivered after {timeout:.0f}s: {counts}; is a worker running?")
            time.sleep(0.2)
