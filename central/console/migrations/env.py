"""Alembic environment of the console's own tables (engine from central.console.schema_upgrade)."""

from __future__ import annotations

from alembic import context

from central.console.schema import ConsoleBase

VERSION_TABLE = "console_alembic_version"
config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=ConsoleBase.metadata, version_table=VERSION_TABLE,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
