"""Alembic environment: run by ``lumenal.labels.db.migrate`` on the service's own connection."""

from __future__ import annotations

from alembic import context

from lumenal.labels.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through lumenal.labels.db.migrate(engine)")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
