"""Organiser accounts: argon2 password hashes, sign-in, and bearer tokens for the JSON API.

The web pages, the API and the CLI (`invites user ...`) all go through these functions.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from invites.db.models import ApiToken, Organiser, OrganiserSession
from invites.domain.audience import check_address
from invites.domain.errors import InputError, NotFound

MIN_PASSWORD_LENGTH = 10
TOKEN_PREFIX = "inv_"

_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """Verified against when the address is unknown, so a wrong address costs as long as a wrong password.
    Made on first use, not at import: every process that imports this module would pay for it."""
    return _hasher.hash(secrets.token_urlsafe(16))


def normalise_email(email: str) -> str:
    try:
        return check_address(email.strip()).lower()
    except EmailNotValidError as exc:
        raise InputError(f"e-mail address {email.strip()!r}: {exc}") from exc


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InputError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")


def add_user(session: Session, email: str, password: str, now: datetime, name: str = "") -> Organiser:
    address = normalise_email(email)
    check_password(password)
    if find_user(session, address) is not None:
        raise InputError(f"an organiser {address} already exists")
    user = Organiser(email=address, name=name.strip(), password_hash=_hasher.hash(password), created_at=now)
    session.add(user)
    session.flush()
    return user


def find_user(session: Session, email: str) -> Organiser | None:
    return session.scalar(select(Organiser).where(func.lower(Organiser.email) == email.strip().lower()))


def get_user(session: Session, email: str) -> Organiser:
    user = find_user(session, email)
    if user is None:
        raise NotFound(f"no organiser {email.strip()}")
    return user


def list_users(session: Session) -> list[Organiser]:
    return list(session.scalars(select(Organiser).order_by(Organiser.email)))


def set_password(session: Session, user: Organiser, password: str, now: datetime) -> None:
    """A new password, and nothing the old one let in still works: every session ends and every API token
    is revoked (a changed password is how an organiser shuts out whoever learned the old one, and a
    token made with it is as good as the password). The caller commits."""
    check_password(password)
    user.password_hash = _hasher.hash(password)
    end_sessions(user, now)
    revoke_tokens(user, now)


def deactivate(session: Session, user: Organiser, now: datetime) -> None:
    """Sign the organiser out everywhere and stop every token; the row stays for the audit trail."""
    user.active = False
    end_sessions(user, now)
    revoke_tokens(user, now)


def authenticate(session: Session, email: str, password: str, now: datetime) -> Organiser | None:
    """The organiser with this address and password, or None; the same work is done either way."""
    user = find_user(session, email)
    try:
        _hasher.verify(user.password_hash if user else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = now
    return user


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown once; only its digest is stored


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token(session: Session, user: Organiser, name: str, now: datetime) -> IssuedToken:
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(organiser_id=user.id, name=name.strip()[:120], digest=_digest(secret), created_at=now)
    session.add(token)
    session.flush()
    return IssuedToken(token, secret)


def user_for_token(session: Session, secret: str, now: datetime) -> Organiser | None:
    if not secret.startswith(TOKEN_PREFIX):
        return None
    token = session.scalar(select(ApiToken).where(ApiToken.digest == _digest(secret)))
    if token is None or token.revoked_at is not None or not token.organiser.active:
        return None
    token.last_used_at = now
    return token.organiser


def revoke_token(session: Session, user: Organiser, token_id: int, now: datetime) -> None:
    token = session.get(ApiToken, token_id)
    if token is None or token.organiser_id != user.id:
        raise NotFound(f"{user.email} has no API token {token_id}")
    token.revoked_at = token.revoked_at or now


def revoke_tokens(user: Organiser, now: datetime) -> None:
    """Stop every API token of the organiser that still works. The caller commits."""
    for token in user.tokens:
        if token.revoked_at is None:
            token.revoked_at = now


def start_session(session: Session, user: Organiser, now: datetime, user_agent: str = "") -> str:
    """A new signed-in browser; returns the id its cookie carries (only the digest is stored)."""
    secret = secrets.token_urlsafe(32)
    session.add(
        OrganiserSession(
            organiser_id=user.id, digest=_digest(secret), created_at=now, user_agent=user_agent[:300]
        )
    )
    session.flush()
    return secret


def user_for_session(session: Session, secret: str) -> Organiser | None:
    row = session.scalar(select(OrganiserSession).where(OrganiserSession.digest == _digest(secret)))
    if row is None or row.ended_at is not None or not row.organiser.active:
        return None
    return row.organiser


def end_session(session: Session, secret: str, now: datetime) -> None:
    row = session.scalar(select(OrganiserSession).where(OrganiserSession.digest == _digest(secret)))
    if row is not None and row.ended_at is None:
        row.ended_at = now


def end_sessions(user: Organiser, now: datetime) -> None:
    for row in user.sessions:
        if row.ended_at is None:
            row.ended_at = now


# --- The use cases of the sign-in doors: each a transaction of its own ----------------------------------


@dataclass(frozen=True)
class Identity:
    """Who is signed in, as the web app keeps it for a request."""

    id: int
    email: str
    name: str


def sign_in(
    factory: sessionmaker[Session], email: str, password: str, now: datetime, user_agent: str = ""
) -> str | None:
    """A new session's id, when the address and password match (`authenticate`, `start_session`)."""
    with factory() as session:
        user = authenticate(session, email, password, now)
        if user is None:
            return None
        sid = start_session(session, user, now, user_agent)
        session.commit()
    return sid


def sign_out(factory: sessionmaker[Session], sid: str, now: datetime) -> None:
    with factory() as session:
        end_session(session, sid, now)
        session.commit()


def identity_for_token(factory: sessionmaker[Session], secret: str, now: datetime) -> Identity | None:
    """Who an API token belongs to (its use is recorded), or None for an unknown, revoked or expired one."""
    with factory() as session:
        user = user_for_token(session, secret, now)
        if user is None:
            return None
        found = Identity(user.id, user.email, user.name)
        session.commit()
    return found
