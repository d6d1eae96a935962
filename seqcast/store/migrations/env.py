"""Alembic environment: migrations run on the connection seqcast hands over (`seqcast.store.engine`)."""

from __future__ import annotations

from alembic import context

from seqcast.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,  # SQLite alters tables by copying them
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
