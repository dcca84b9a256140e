"""The schema: one set of Alembic revisions for PostgreSQL and SQLite, matching the models; typed errors
when the database is not there."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from central.db import open_database, sqlite_url
from central.errors import DatabaseUnavailable
from central.models import Base
from central.pgserver import LocalPostgres

HEAD = "0005"


def _diff(db) -> list:
    with db.engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), Base.metadata)


def test_migrations_build_the_models_schema_on_postgres(pg_url: str) -> None:
    db = open_database(pg_url)
    assert db.is_postgres and db.current_revision() == HEAD
    assert _diff(db) == []
    db.upgrade()  # idempotent
    db.dispose()


def test_migrations_build_the_same_schema_on_sqlite(tmp_path: Path) -> None:
    db = open_database(sqlite_url(tmp_path / "c.db"))
    assert not db.is_postgres and db.current_revision() == HEAD
    assert _diff(db) == []
    db.dispose()


def test_a_database_that_is_down_is_a_typed_error_and_comes_back() -> None:
    pg = LocalPostgres()
    try:
        pg.start()
        db = open_database(pg.url)
        pg.stop()
        with pytest.raises(DatabaseUnavailable):
            with db.session() as s:
                s.execute(text("select count(*) from devices"))
        pg.start()
        with db.session() as s:
            assert s.execute(text("select count(*) from devices")).scalar() == 0
        db.dispose()
    finally:
        pg.destroy()


def test_an_unreachable_database_url_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailable):
        open_database(f"postgresql+psycopg://postgres@/nope?host={tmp_path}&port=5432")


def test_a_database_at_the_first_revision_upgrades_in_place(tmp_path: Path) -> None:
    from central.db import Database

    db = Database(sqlite_url(tmp_path / "old.db"))
    db.upgrade("0001")
    with db.session() as s:
        s.execute(text("insert into alerts(rule, device, ts, detail) values ('tamper', 'd', 1.0, 'x')"))
    db.upgrade()
    assert db.current_revision() == HEAD and _diff(db) == []
    with db.session() as s:
        assert s.execute(text("select rule, key from alerts")).all() == [("tamper", None)]
    db.dispose()
