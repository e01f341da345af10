"""Alembic environment: the connection or URL comes from ``transom.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from transom.models import Base

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through transom.migrate")
_run(connection)
