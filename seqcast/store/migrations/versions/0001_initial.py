"""The schema of release 0.1 (SCHEMA_VERSION 1), frozen: databases created before migrations are stamped here.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_LATEST_RUN_PER_SERIES = """
    SELECT series_id, run_id FROM (
        SELECT m.series_id, m.run_id,
               ROW_NUMBER() OVER (PARTITION BY m.series_id
                                  ORDER BY r.started_at DESC, r.run_id DESC) AS rn
        FROM (SELECT DISTINCT series_id, run_id FROM metrics) m
        JOIN pipeline_runs r ON r.run_id = m.run_id
        WHERE r.status = 'completed'
    ) ranked WHERE rn = 1
"""

VIEWS = {
    "latest_forecasts": f"""
        SELECT f.run_id, f.series_id, f.model_kind, f.origin, f.period, f.step,
               f.yhat, f.yhat_lower, f.yhat_upper, f.interval_level, f.model_id
        FROM forecasts f
        JOIN ({_LATEST_RUN_PER_SERIES}) l ON l.series_id = f.series_id AND l.run_id = f.run_id
        WHERE f.is_champion = TRUE
    """,
    "latest_metrics": f"""
        SELECT m.run_id, m.series_id, m.model_kind, m.holdout_start, m.holdout_end,
               m.mae, m.rmse, m.mape, m.smape, m.mase, m.is_champion, m.model_id
        FROM metrics m
        JOIN ({_LATEST_RUN_PER_SERIES}) l ON l.series_id = m.series_id AND l.run_id = m.run_id
    """,
}


def _scores() -> list[sa.Column[float]]:
    return [sa.Column(name, sa.Float) for name in ("mae", "rmse", "mape", "smape", "mase")]


def upgrade() -> None:
    sid, kind, ident = sa.String(255), sa.String(32), sa.String(64)
    op.create_table(
        "seqcast_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "observations",
        sa.Column("series_id", sid, primary_key=True),
        sa.Column("period", sa.Date, primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("batch_id", ident, nullable=False),
        sa.Column("ingested_at", sa.DateTime, nullable=False),
        sa.Column("is_filled", sa.Boolean, nullable=False, server_default=sa.false()),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "observation_revisions",
        sa.Column("revision_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("series_id", sid, nullable=False, index=True),
        sa.Column("period", sa.Date, nullable=False),
        sa.Column("old_value", sa.Float, nullable=False),
        sa.Column("new_value", sa.Float, nullable=False),
        sa.Column("batch_id", ident, nullable=False),
        sa.Column("revised_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "ingest_batches",
        sa.Column("batch_id", ident, primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("archive_path", sa.Text),
        sa.Column("sha256", sa.String(64), nullable=False, index=True),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        *(
            sa.Column(name, sa.Integer, nullable=False, server_default="0")
            for name in ("rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_rejected")
        ),
    )
    op.create_table(
        "rejected_rows",
        sa.Column("batch_id", ident, primary_key=True),
        sa.Column("row_number", sa.Integer, primary_key=True),
        sa.Column("raw", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_table(
        "pipeline_runs",
        sa.Column("run_id", ident, primary_key=True),
        sa.Column("flow_run_id", sa.String(64)),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("status", sa.String(16), nullable=False),
        *(
            sa.Column(name, sa.Integer, nullable=False, server_default="0")
            for name in ("new_observations", "series_trained", "series_reused", "series_skipped")
        ),
        sa.Column("config_json", sa.Text),
        sa.Column("message", sa.Text),
        sa.Column("data_dir", sa.Text),
    )
    op.create_table(
        "model_runs",
        sa.Column("model_id", ident, primary_key=True),
        sa.Column("series_id", sid, nullable=False, index=True),
        sa.Column("model_kind", kind, nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("config_hash", sa.String(32), nullable=False),
        sa.Column("data_hash", sa.String(64), nullable=False),
        sa.Column("trained_at", sa.DateTime, nullable=False),
        sa.Column("train_seconds", sa.Float, nullable=False),
        sa.Column("epochs", sa.Integer, nullable=False),
        sa.Column("artifact_path", sa.Text, nullable=False),
        sa.Column("run_id", ident),
    )
    op.create_table(
        "training_history",
        sa.Column("model_id", ident, primary_key=True),
        sa.Column("epoch", sa.Integer, primary_key=True),
        sa.Column("train_loss", sa.Float, nullable=False),
        sa.Column("val_loss", sa.Float),
    )
    op.create_table(
        "metrics",
        sa.Column("run_id", ident, primary_key=True),
        sa.Column("series_id", sid, primary_key=True),
        sa.Column("model_kind", kind, primary_key=True),
        sa.Column("holdout_start", sa.Date, nullable=False),
        sa.Column("holdout_end", sa.Date, nullable=False),
        *_scores(),
        sa.Column("is_champion", sa.Boolean, nullable=False),
        sa.Column("model_id", ident),
    )
    op.create_table(
        "forecasts",
        sa.Column("run_id", ident, primary_key=True),
        sa.Column("series_id", sid, primary_key=True),
        sa.Column("model_kind", kind, primary_key=True),
        sa.Column("origin", sa.Date, nullable=False),
        sa.Column("period", sa.Date, primary_key=True),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("yhat", sa.Float, nullable=False),
        sa.Column("yhat_lower", sa.Float),
        sa.Column("yhat_upper", sa.Float),
        sa.Column("interval_level", sa.Float),
        sa.Column("is_champion", sa.Boolean, nullable=False),
        sa.Column("model_id", ident),
    )
    op.create_table(
        "series_status",
        sa.Column("run_id", ident, primary_key=True),
        sa.Column("series_id", sid, primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
    )
    op.create_table(
        "backtest_metrics",
        sa.Column("backtest_id", ident, primary_key=True),
        sa.Column("series_id", sid, primary_key=True),
        sa.Column("model_kind", kind, primary_key=True),
        sa.Column("origin", sa.Date, primary_key=True),
        sa.Column("horizon", sa.Integer, nullable=False),
        *_scores(),
        sa.Column("coverage", sa.Float),
        sa.Column("interval_level", sa.Float),
        sa.Column("chosen_kind", kind),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_forecasts_series_run", "forecasts", ["series_id", "run_id"])
    op.create_index("ix_metrics_series_run", "metrics", ["series_id", "run_id"])
    for name, body in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {body}")


def downgrade() -> None:
    for name in VIEWS:
        op.execute(f"DROP VIEW {name}")
    for table in (
        "backtest_metrics",
        "series_status",
        "forecasts",
        "metrics",
        "training_history",
        "model_runs",
        "pipeline_runs",
        "rejected_rows",
        "ingest_batches",
        "observation_revisions",
        "observations",
        "seqcast_meta",
    ):
        op.drop_table(table)
