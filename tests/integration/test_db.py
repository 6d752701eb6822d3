"""Migrations on SQLite and PostgreSQL: up, down and up again, and a fresh database made ready on demand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.exc import StatementError

from invites import db
from invites.db.models import Base, Series

TABLES = set(Base.metadata.tables)


def test_upgrade_downgrade_and_upgrade_again(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        assert not db.is_current(engine)
        db.upgrade(engine)
        assert set(inspect(engine).get_table_names()) >= TABLES
        assert db.is_current(engine)
        db.downgrade(engine, "base")
        assert not TABLES & set(inspect(engine).get_table_names())
        db.ensure_schema(engine)
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_the_migration_matches_the_models(database_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = db.make_engine(database_url)
    try:
        db.upgrade(engine)
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
    finally:
        engine.dispose()


def test_times_come_back_aware_and_in_utc(database_url: str) -> None:
    from invites.db.models import Event

    engine = db.make_engine(database_url)
    try:
        db.upgrade(engine)
        factory = db.session_factory(engine)
        amsterdam = timezone(timedelta(hours=1))
        start = datetime(2018, 2, 13, 19, 30, tzinfo=amsterdam)
        with db.transaction(factory) as session:
            session.add(
                Event(
                    slug="x",
                    title="X",
                    ics_uid="x@test",
                    starts_at=start,
                    ends_at=start + timedelta(hours=2),
                    created_at=start,
                    updated_at=start,
                )
            )
        with factory() as session:
            event = session.scalars(select(Event)).one()
            assert event.starts_at == datetime(2018, 2, 13, 18, 30, tzinfo=UTC)
            assert event.starts_at.tzinfo is UTC
        with pytest.raises(StatementError, match="naive datetime"), db.transaction(factory) as session:
            session.add(Series(slug="s", title="S"))
            session.add(
                Event(
                    slug="y",
                    title="Y",
                    ics_uid="y@test",
                    starts_at=datetime(2018, 1, 1),
                    ends_at=start,
                    created_at=start,
                    updated_at=start,
                )
            )
        with factory() as session:
            assert session.scalars(select(Series)).all() == [], "a failed transaction stores nothing"
    finally:
        engine.dispose()
