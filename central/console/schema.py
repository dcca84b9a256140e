"""The console's own tables, beside the centre's (central.models) in the same database.

They have their own declarative base and their own Alembic chain (central/console/migrations, version
table `console_alembic_version`), so the centre's schema and migrations stay exactly as they are.

    console_operators    who may log in: role, argon2id hash (never the password), the failure counter
                         and lockout, the TOTP secret sealed under the centre's keystore (AEAD)
    console_sessions     server-side sessions: only the SHA-256 of the cookie value is stored
    console_alert_state  per alert: acknowledged / resolved, by whom, with a note
"""

from __future__ import annotations

from sqlalchemy import Float, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ROLES = ("viewer", "operator", "admin")


class ConsoleBase(DeclarativeBase):
    pass


class Operator(ConsoleBase):
    __tablename__ = "console_operators"
    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(256), nullable=False)
    totp_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_last_step: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    locked_until: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    last_login_at: Mapped[float | None] = mapped_column(Float)


class SessionRow(ConsoleBase):
    __tablename__ = "console_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    csrf: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    last_seen: Mapped[float] = mapped_column(Float, nullable=False)


class AlertState(ConsoleBase):
    __tablename__ = "console_alert_state"
    alert_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # acknowledged | resolved
    ack_by: Mapped[str | None] = mapped_column(String(64))
    ack_at: Mapped[float | None] = mapped_column(Float)
    ack_note: Mapped[str | None] = mapped_column(Text)
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[float | None] = mapped_column(Float)
    resolved_note: Mapped[str | None] = mapped_column(Text)


def upgrade(db) -> None:  # noqa: ANN001 - central.db.Database
    """Bring the console's tables to head (idempotent; the centre's own schema must already be migrated)."""
    from pathlib import Path

    from alembic import command
    from alembic.config import Config
    from sqlalchemy.exc import DBAPIError

    from central.db import is_unavailable
    from central.errors import DatabaseUnavailable

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).resolve().parent / "migrations"))
    cfg.attributes["engine"] = db.engine
    try:
        command.upgrade(cfg, "head")
    except DBAPIError as exc:
        if is_unavailable(exc):
            raise DatabaseUnavailable("database unavailable during the console's migration") from None
        raise
