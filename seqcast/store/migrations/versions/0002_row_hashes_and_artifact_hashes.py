"""Received files are told apart by the rows they hold; model artifacts carry the hash they were written with.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ingest_batches") as batch:
        batch.add_column(sa.Column("rows_sha256", sa.String(64)))
        batch.create_index("ix_ingest_batches_rows_sha256", ["rows_sha256"])
    with op.batch_alter_table("model_runs") as batch:
        batch.add_column(sa.Column("artifact_sha256", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("model_runs") as batch:
        batch.drop_column("artifact_sha256")
    with op.batch_alter_table("ingest_batches") as batch:
        batch.drop_index("ix_ingest_batches_rows_sha256")
        batch.drop_column("rows_sha256")
