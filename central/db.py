"""The centre's database: one URL, SQLAlchemy 2 engine and sessions, Alembic migrations.

URLs: ``sqlite:///path/central.db`` (the embedded default for one small site) or
``postgresql+psycopg://user@/dbname?host=/socket/dir`` (the fleet store).  Both get the same schema from
the same Alembic revisions.  Every database failure that means "the server is not there" (refused
connection, server restarting, dropped connection) surfaces as `DatabaseUnavailable`, so workers can
back off and retry instead of crashing, and nothing half-written is left: each unit of work is one
transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import InterfaceError as SAInterfaceError
from sqlalchemy.orm import Session, sessionmaker

from central.errors import DatabaseUnavailable

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def make_engine(url: str) -> Engine:
    """An engine with settings suited to each backend (WAL + FULL sync for SQLite, pre-ping for PostgreSQL)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 - DBAPI connection
            cur = dbapi_conn.cursor()
            cur.execute("pragma journal_mode=wal")
            cur.execute("pragma synchronous=FULL")
            cur.execute("pragma foreign_keys=on")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5,
                         connect_args={"connect_timeout": 5})


def _raw_unavailable() -> tuple[type[BaseException], ...]:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - SQLite-only install
        return ()
    return (psycopg.OperationalError, psycopg.InterfaceError)


_RAW_UNAVAILABLE = _raw_unavailable()


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` means the server is unreachable rather than that the statement was wrong (also for
    psycopg's own errors, raised by the few statements that use the driver's cursor directly)."""
    if isinstance(exc, OperationalError | SAInterfaceError) or isinstance(exc, _RAW_UNAVAILABLE):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


class Database:
    """Engine + session factory.  `session()` is a transaction: committed on success, rolled back on error."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        s = self._sessions()
        try:
            yield s
            s.commit()
        except BaseException as exc:
            s.rollback()
            if isinstance(exc, (DBAPIError, *_RAW_UNAVAILABLE)) and is_unavailable(exc):
                orig = getattr(exc, "orig", None) or exc
                raise DatabaseUnavailable(f"database unavailable ({self.engine.dialect.name}): "
                                          f"{orig.__class__.__name__}") from None
            raise
        finally:
            s.close()

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to `revision` with Alembic (idempotent; the same revisions for both backends)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["engine"] = self.engine
        try:
            command.upgrade(cfg, revision)
        except DBAPIError as exc:
            if is_unavailable(exc):
                raise DatabaseUnavailable(f"database unavailable during migration: "
                                          f"{exc.orig.__class__.__name__ if exc.orig else ''}") from None
            raise

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        try:
            with self.engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()
        except DBAPIError as exc:
            if is_unavailable(exc):
                raise DatabaseUnavailable("database unavailable") from None
            raise

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(url: str, migrate: bool = True) -> Database:
    db = Database(url)
    if migrate:
        db.upgrade()
    return db
