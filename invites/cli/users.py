"""`invites user ...`: organiser accounts and their API tokens."""

from __future__ import annotations

import secrets
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from invites import db
from invites.domain.errors import InputError, NotFound
from invites.runtime import Runtime
from invites.services import accounts

user_app = typer.Typer(
    help="Organiser accounts (sign-in to the web pages) and API tokens.", no_args_is_help=True
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="read the password from standard input (for scripts)")
]


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(1)


def _password(from_stdin: bool) -> tuple[str, bool]:
    """The new password, and whether it was made up here (and so must be shown once)."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    if sys.stdin.isatty():
        return typer.prompt("Password", hide_input=True, confirmation_prompt=True), False
    return secrets.token_urlsafe(15), True


@user_app.command("add")
def user_add(
    email: str,
    name: Annotated[str, typer.Option(help="the organiser's name, shown on the pages")] = "",
    password_stdin: PasswordStdin = False,
) -> None:
    """Create an organiser account; without --password-stdin or a terminal, a password is made up."""
    password, made_up = _password(password_stdin)
    runtime = Runtime.current()
    try:
        with db.transaction(runtime.sessions) as session:
            user = accounts.add_user(session, email, password, datetime.now(UTC), name=name)
            address = user.email
    except InputError as exc:
        raise _fail(str(exc)) from exc
    out.print(f"organiser {address} added; sign in at {runtime.settings.base_url}/login", highlight=False)
    if made_up:
        out.print(f"password (shown once): {password}", highlight=False)


@user_app.command("password")
def user_password(email: str, password_stdin: PasswordStdin = False) -> None:
    """Set a new password; every session of this organiser ends and every API token is revoked."""
    password, made_up = _password(password_stdin)
    runtime = Runtime.current()
    try:
        with db.transaction(runtime.sessions) as session:
            user = accounts.get_user(session, email)
            revoked = sum(1 for token in user.tokens if token.revoked_at is None)
            accounts.set_password(session, user, password, datetime.now(UTC))
    except (InputError, NotFound) as exc:
        raise _fail(str(exc)) from exc
    out.print(
        f"new password for {email.strip()}; signed out everywhere, {revoked} API token(s) revoked"
        " (make new ones with `invites user token`)",
        highlight=False,
    )
    if made_up:
        out.print(f"password (shown once): {password}", highlight=False)


@user_app.command("remove")
def user_remove(email: str) -> None:
    """Stop an account: its sessions end and its API tokens stop working."""
    runtime = Runtime.current()
    try:
        with db.transaction(runtime.sessions) as session:
            accounts.deactivate(session, accounts.get_user(session, email), datetime.now(UTC))
    except NotFound as exc:
        raise _fail(str(exc)) from exc
    out.print(f"{email.strip()} can no longer sign in", highlight=False)


@user_app.command("list")
def user_list() -> None:
    """The organiser accounts."""
    runtime = Runtime.current()
    table = Table("e-mail", "name", "active", "last sign-in", "API tokens")
    with runtime.sessions() as session:
        for user in accounts.list_users(session):
            live = sum(1 for token in user.tokens if token.revoked_at is None)
            last = user.last_login_at.strftime("%Y-%m-%d %H:%M UTC") if user.last_login_at else "never"
            table.add_row(user.email, user.name, "yes" if user.active else "no", last, str(live))
    out.print(table)


@user_app.command("token")
def user_token(email: str, name: Annotated[str, typer.Option(help="what the token is for")] = "api") -> None:
    """Make an API token for the JSON API; it is printed once (only its hash is stored)."""
    runtime = Runtime.current()
    try:
        with db.transaction(runtime.sessions) as session:
            issued = accounts.issue_token(session, accounts.get_user(session, email), name, datetime.now(UTC))
            token_id = issued.token.id
    except NotFound as exc:
        raise _fail(str(exc)) from exc
    err.print(
        f"token {token_id} for {email.strip()}; send it as 'Authorization: Bearer TOKEN'", highlight=False
    )
    out.print(issued.secret, highlight=False)


@user_app.command("revoke-token")
def user_revoke_token(email: str, token_id: int) -> None:
    """Stop an API token."""
    runtime = Runtime.current()
    try:
        with db.transaction(runtime.sessions) as session:
            accounts.revoke_token(session, accounts.get_user(session, email), token_id, datetime.now(UTC))
    except NotFound as exc:
        raise _fail(str(exc)) from exc
    out.print(f"token {token_id} revoked", highlight=False)
