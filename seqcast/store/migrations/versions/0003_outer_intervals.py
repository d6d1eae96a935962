"""Forecasts carry a second, wider interval (95% by default) beside the first; the view shows both.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_LATEST_RUN_PER_SERIES = """
    SELECT series_id, run_id FROM (
        SELECT m.series_id, m.run_id,
               ROW_NUMBER() OVER (PARTITION BY m.series_id
                                  ORDER BY r.started_at DESC, r.run_id DESC) AS rn
        FROM (SELECT DISTINCT series_id, run_id FROM forecasts) m
        JOIN pipeline_runs r ON r.run_id = m.run_id
        WHERE r.status = 'completed'
    ) ranked WHERE rn = 1
"""

LATEST_FORECASTS = f"""
    SELECT f.run_id, f.series_id, f.model_kind, f.origin, f.period, f.step,
           f.yhat, f.yhat_lower, f.yhat_upper, f.interval_level,
           f.yhat_lower_outer, f.yhat_upper_outer, f.interval_level_outer, f.model_id
    FROM forecasts f
    JOIN ({_LATEST_RUN_PER_SERIES}) l ON l.series_id = f.series_id AND l.run_id = f.run_id
    WHERE f.is_champion = TRUE
"""


def upgrade() -> None:
    op.execute("DROP VIEW latest_forecasts")
    with op.batch_alter_table("forecasts") as batch:
        batch.add_column(sa.Column("yhat_lower_outer", sa.Float))
        batch.add_column(sa.Column("yhat_upper_outer", sa.Float))
        batch.add_column(sa.Column("interval_level_outer", sa.Float))
    op.execute(f"CREATE VIEW latest_forecasts AS {LATEST_FORECASTS}")


def downgrade() -> None:
    from importlib import import_module

    previous = import_module("seqcast.store.migrations.versions.0001_initial")
    op.execute("DROP VIEW latest_forecasts")
    with op.batch_alter_table("forecasts") as batch:
        batch.drop_column("interval_level_outer")
        batch.drop_column("yhat_upper_outer")
        batch.drop_column("yhat_lower_outer")
    op.execute(f"CREATE VIEW latest_forecasts AS {previous.VIEWS['latest_forecasts']}")
