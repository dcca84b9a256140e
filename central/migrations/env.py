"""Alembic environment: the engine comes from `central.db.Database.upgrade` (config.attributes)."""

from __future__ import annotations

from alembic import context

from central.models import Base

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # `alembic -x url=...` from a shell
    from central.db import make_engine

    engine = make_engine(context.get_x_argument(as_dictionary=True)["url"])

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
