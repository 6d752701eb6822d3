"""The database: the models, the engine and its migrations, and the queries several services share.

`from invites import db` gives the engine's functions (db.transaction, db.upgrade, ...); the models are in
`invites.db.models` and the shared queries in `invites.db.segments`."""

from invites.db.engine import (
    alembic_config,
    downgrade,
    ensure_schema,
    is_current,
    make_engine,
    normalise_url,
    session_factory,
    transaction,
    upgrade,
)

__all__ = [
    "alembic_config",
    "downgrade",
    "ensure_schema",
    "is_current",
    "make_engine",
    "normalise_url",
    "session_factory",
    "transaction",
    "upgrade",
]
