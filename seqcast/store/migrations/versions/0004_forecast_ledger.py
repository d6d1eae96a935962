"""The forecast ledger (`forecast_outcomes`) and its accuracy views; series statuses say which run's forecast
stands and whether the series degraded; the latest_* views say when they were published; on PostgreSQL every
table and column carries its description as a comment.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from importlib import import_module

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

#: The views as this migration defines them (frozen: a later change is a new migration).
VIEWS = {
    "latest_forecasts": """
        SELECT f.run_id, f.series_id, f.model_kind, f.origin, f.period, f.step,
               f.yhat, f.yhat_lower, f.yhat_upper, f.interval_level,
               f.yhat_lower_outer, f.yhat_upper_outer, f.interval_level_outer, f.model_id,
               l.finished_at AS published_at
        FROM forecasts f
        JOIN (
    SELECT series_id, run_id, finished_at FROM (
        SELECT m.series_id, m.run_id, r.finished_at,
               ROW_NUMBER() OVER (PARTITION BY m.series_id
                                  ORDER BY r.started_at DESC, r.run_id DESC) AS rn
        FROM (SELECT DISTINCT series_id, run_id FROM forecasts) m
        JOIN pipeline_runs r ON r.run_id = m.run_id
        WHERE r.status = 'completed'
    ) ranked WHERE rn = 1
) l ON l.series_id = f.series_id AND l.run_id = f.run_id
        WHERE f.is_champion = TRUE
""",
    "latest_metrics": """
        SELECT m.run_id, m.series_id, m.model_kind, m.holdout_start, m.holdout_end,
               m.mae, m.rmse, m.mape, m.smape, m.mase, m.is_champion, m.model_id,
               l.finished_at AS published_at
        FROM metrics m
        JOIN (
    SELECT series_id, run_id, finished_at FROM (
        SELECT m.series_id, m.run_id, r.finished_at,
               ROW_NUMBER() OVER (PARTITION BY m.series_id
                                  ORDER BY r.started_at DESC, r.run_id DESC) AS rn
        FROM (SELECT DISTINCT series_id, run_id FROM metrics) m
        JOIN pipeline_runs r ON r.run_id = m.run_id
        WHERE r.status = 'completed'
    ) ranked WHERE rn = 1
) l ON l.series_id = m.series_id AND l.run_id = m.run_id
""",
    "forecast_accuracy": """
        SELECT o.series_id, o.model_kind, w.window_name,
        COUNT(*) AS outcomes,
        COUNT(DISTINCT o.period) AS months,
        MIN(o.period) AS first_period,
        MAX(o.period) AS last_period,
        AVG(ABS(o.error)) AS mae,
        AVG(o.scaled_error) AS mase,
        AVG(o.smape_term) AS smape,
        AVG(-o.error) AS bias,
        CAST(AVG(CASE WHEN o.covered THEN 1.0 WHEN o.covered IS NULL THEN NULL ELSE 0.0 END) AS FLOAT) AS coverage,
        MAX(o.interval_level) AS interval_level,
        CAST(AVG(CASE WHEN o.covered_outer THEN 1.0 WHEN o.covered_outer IS NULL THEN NULL ELSE 0.0 END)
            AS FLOAT) AS coverage_outer,
        MAX(o.interval_level_outer) AS interval_level_outer,
        MAX(o.published_at) AS last_published_at

        FROM (
    SELECT x.*, DENSE_RANK() OVER (PARTITION BY x.series_id ORDER BY x.period DESC) AS month_rank
    FROM forecast_outcomes x
) o
        JOIN (SELECT 'last_12_months' AS window_name, 12 AS months UNION ALL SELECT 'all_time', NULL) w
          ON w.months IS NULL OR o.month_rank <= w.months

        GROUP BY o.series_id, o.model_kind, w.window_name
""",
    "champion_accuracy": """
        SELECT o.series_id, w.window_name,
        COUNT(*) AS outcomes,
        COUNT(DISTINCT o.period) AS months,
        MIN(o.period) AS first_period,
        MAX(o.period) AS last_period,
        AVG(ABS(o.error)) AS mae,
        AVG(o.scaled_error) AS mase,
        AVG(o.smape_term) AS smape,
        AVG(-o.error) AS bias,
        CAST(AVG(CASE WHEN o.covered THEN 1.0 WHEN o.covered IS NULL THEN NULL ELSE 0.0 END) AS FLOAT) AS coverage,
        MAX(o.interval_level) AS interval_level,
        CAST(AVG(CASE WHEN o.covered_outer THEN 1.0 WHEN o.covered_outer IS NULL THEN NULL ELSE 0.0 END)
            AS FLOAT) AS coverage_outer,
        MAX(o.interval_level_outer) AS interval_level_outer,
        MAX(o.published_at) AS last_published_at

        FROM (
    SELECT x.*, DENSE_RANK() OVER (PARTITION BY x.series_id ORDER BY x.period DESC) AS month_rank
    FROM forecast_outcomes x
) o
        JOIN (SELECT 'last_12_months' AS window_name, 12 AS months UNION ALL SELECT 'all_time', NULL) w
          ON w.months IS NULL OR o.month_rank <= w.months
        WHERE o.is_champion = TRUE
        GROUP BY o.series_id, w.window_name
""",
}


def _forecast_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("origin", sa.Date, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("yhat", sa.Float, nullable=False),
        sa.Column("yhat_lower", sa.Float),
        sa.Column("yhat_upper", sa.Float),
        sa.Column("interval_level", sa.Float),
        sa.Column("is_champion", sa.Boolean, nullable=False),
        sa.Column("model_id", sa.String(64)),
        sa.Column("yhat_lower_outer", sa.Float),
        sa.Column("yhat_upper_outer", sa.Float),
        sa.Column("interval_level_outer", sa.Float),
    ]


def upgrade() -> None:
    for name in ("latest_forecasts", "latest_metrics"):
        op.execute(f"DROP VIEW {name}")
    op.create_table(
        "forecast_outcomes",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("series_id", sa.String(255), primary_key=True),
        sa.Column("model_kind", sa.String(32), primary_key=True),
        sa.Column("period", sa.Date, primary_key=True),
        *_forecast_columns(),
        sa.Column("actual", sa.Float, nullable=False),
        sa.Column("error", sa.Float, nullable=False),
        sa.Column("scale", sa.Float),
        sa.Column("scaled_error", sa.Float),
        sa.Column("smape_term", sa.Float),
        sa.Column("covered", sa.Boolean),
        sa.Column("covered_outer", sa.Boolean),
        sa.Column("published_at", sa.DateTime),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
        sa.Column("revised_at", sa.DateTime),
    )
    op.create_index("ix_forecast_outcomes_series_period", "forecast_outcomes", ["series_id", "period"])
    op.create_index("ix_forecasts_series_period", "forecasts", ["series_id", "period"])
    with op.batch_alter_table("series_status") as batch:
        batch.add_column(sa.Column("degraded", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("forecast_run_id", sa.String(64)))
        batch.add_column(sa.Column("forecast_sha256", sa.String(64)))
    for name, body in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {body}")
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        from seqcast.store.docs import comment_statements

        for statement in comment_statements():
            bind.execute(statement)


def downgrade() -> None:
    previous = import_module("seqcast.store.migrations.versions.0003_outer_intervals")
    first = import_module("seqcast.store.migrations.versions.0001_initial")
    for name in VIEWS:
        op.execute(f"DROP VIEW {name}")
    with op.batch_alter_table("series_status") as batch:
        batch.drop_column("forecast_sha256")
        batch.drop_column("forecast_run_id")
        batch.drop_column("degraded")
    op.drop_index("ix_forecasts_series_period", "forecasts")
    op.drop_index("ix_forecast_outcomes_series_period", "forecast_outcomes")
    op.drop_table("forecast_outcomes")
    op.execute(f"CREATE VIEW latest_forecasts AS {previous.LATEST_FORECASTS}")
    op.execute(f"CREATE VIEW latest_metrics AS {first.VIEWS['latest_metrics']}")
