"""Every table and view for SQL consumers (DESIGN.md, "Tables"); the migrations in `migrations/` build them.

This module describes the newest schema, for queries and for tests that compare it with what the migrations
create. A change to a table or a view is a new migration (`seqcast/store/migrations/versions/`).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

SeriesId = sa.String(255)
Kind = sa.String(32)
Id = sa.String(64)
Sha = sa.String(64)

meta_table = sa.Table(
    "seqcast_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

observations = sa.Table(
    "observations",
    metadata,
    sa.Column("series_id", SeriesId, primary_key=True),
    sa.Column("period", sa.Date, primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("batch_id", Id, nullable=False),
    sa.Column("ingested_at", sa.DateTime, nullable=False),
    sa.Column("is_filled", sa.Boolean, nullable=False, server_default=sa.false()),
    # Rows clustered by (series_id, period): no separate key index to maintain, and a series is contiguous.
    sqlite_with_rowid=False,
)

observation_revisions = sa.Table(
    "observation_revisions",
    metadata,
    sa.Column("revision_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("series_id", SeriesId, nullable=False, index=True),
    sa.Column("period", sa.Date, nullable=False),
    sa.Column("old_value", sa.Float, nullable=False),
    sa.Column("new_value", sa.Float, nullable=False),
    sa.Column("batch_id", Id, nullable=False),
    sa.Column("revised_at", sa.DateTime, nullable=False),
)

#: Statuses of a received file: `applied` (its rows were merged), `duplicate` (the same rows as an applied
#: batch, nothing changed), `rejected` (no usable row), `refused` (not a regular file: a link, a folder),
#: `failed` (an unexpected error: the file stays where it was and the next run tries again).
BATCH_STATUSES = ("applied", "duplicate", "rejected", "refused", "failed")

ingest_batches = sa.Table(
    "ingest_batches",
    metadata,
    sa.Column("batch_id", Id, primary_key=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("archive_path", sa.Text),
    sa.Column("sha256", Sha, nullable=False, index=True),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("rows_read", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rows_inserted", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rows_updated", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rows_unchanged", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rows_rejected", sa.Integer, nullable=False, server_default="0"),
    # Hash of the rows as parsed (series, month, value): what tells a re-sent file from new data, whatever
    # its bytes (the same numbers under another series id are new rows).
    sa.Column("rows_sha256", Sha, index=True),
)

rejected_rows = sa.Table(
    "rejected_rows",
    metadata,
    sa.Column("batch_id", Id, primary_key=True),
    sa.Column("row_number", sa.Integer, primary_key=True),
    sa.Column("raw", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)

pipeline_runs = sa.Table(
    "pipeline_runs",
    metadata,
    sa.Column("run_id", Id, primary_key=True),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("finished_at", sa.DateTime),
    # running | completed | failed | interrupted (a run that died without finishing)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("new_observations", sa.Integer, nullable=False, server_default="0"),
    sa.Column("series_trained", sa.Integer, nullable=False, server_default="0"),
    sa.Column("series_reused", sa.Integer, nullable=False, server_default="0"),
    sa.Column("series_skipped", sa.Integer, nullable=False, server_default="0"),
    sa.Column("config_json", sa.Text),
    sa.Column("message", sa.Text),
    # The data folder whose run lock the run held: a dead run is recognised by the next one holding it.
    sa.Column("data_dir", sa.Text),
)

model_runs = sa.Table(
    "model_runs",
    metadata,
    sa.Column("model_id", Id, primary_key=True),
    sa.Column("series_id", SeriesId, nullable=False, index=True),
    sa.Column("model_kind", Kind, nullable=False),
    sa.Column("purpose", sa.String(16), nullable=False),  # holdout | final
    sa.Column("config_hash", sa.String(32), nullable=False),
    sa.Column("data_hash", sa.String(64), nullable=False),
    sa.Column("trained_at", sa.DateTime, nullable=False),
    sa.Column("train_seconds", sa.Float, nullable=False),
    sa.Column("epochs", sa.Integer, nullable=False),
    sa.Column("artifact_path", sa.Text, nullable=False),
    sa.Column("run_id", Id),
    # sha256 of the artifact file as written; a file that no longer matches is never used.
    sa.Column("artifact_sha256", Sha),
)

training_history = sa.Table(
    "training_history",
    metadata,
    sa.Column("model_id", Id, primary_key=True),
    sa.Column("epoch", sa.Integer, primary_key=True),
    sa.Column("train_loss", sa.Float, nullable=False),
    sa.Column("val_loss", sa.Float),
)

SCORE_COLUMNS = ("mae", "rmse", "mape", "smape", "mase")


def _score_columns() -> list[sa.Column[float]]:
    """The accuracy columns shared by `metrics` and `backtest_metrics` (MAPE and sMAPE in percent)."""
    return [sa.Column(name, sa.Float) for name in SCORE_COLUMNS]


metrics = sa.Table(
    "metrics",
    metadata,
    sa.Column("run_id", Id, primary_key=True),
    sa.Column("series_id", SeriesId, primary_key=True),
    sa.Column("model_kind", Kind, primary_key=True),
    sa.Column("holdout_start", sa.Date, nullable=False),
    sa.Column("holdout_end", sa.Date, nullable=False),
    *_score_columns(),
    sa.Column("is_champion", sa.Boolean, nullable=False),
    sa.Column("model_id", Id),
)

forecasts = sa.Table(
    "forecasts",
    metadata,
    sa.Column("run_id", Id, primary_key=True),
    sa.Column("series_id", SeriesId, primary_key=True),
    sa.Column("model_kind", Kind, primary_key=True),
    sa.Column("origin", sa.Date, nullable=False),
    sa.Column("period", sa.Date, primary_key=True),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("yhat", sa.Float, nullable=False),
    sa.Column("yhat_lower", sa.Float),
    sa.Column("yhat_upper", sa.Float),
    sa.Column("interval_level", sa.Float),
    sa.Column("is_champion", sa.Boolean, nullable=False),
    sa.Column("model_id", Id),
    # The second, wider interval (interval_level_outer, 95% by default); yhat_lower/upper keep the first.
    sa.Column("yhat_lower_outer", sa.Float),
    sa.Column("yhat_upper_outer", sa.Float),
    sa.Column("interval_level_outer", sa.Float),
)

series_status = sa.Table(
    "series_status",
    metadata,
    sa.Column("run_id", Id, primary_key=True),
    sa.Column("series_id", SeriesId, primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # trained | reused | skipped | failed
    sa.Column("reason", sa.Text),
)

backtest_metrics = sa.Table(
    "backtest_metrics",
    metadata,
    sa.Column("backtest_id", Id, primary_key=True),
    sa.Column("series_id", SeriesId, primary_key=True),
    sa.Column("model_kind", Kind, primary_key=True),
    sa.Column("origin", sa.Date, primary_key=True),  # the last training month
    sa.Column("horizon", sa.Integer, nullable=False),
    *_score_columns(),
    sa.Column("coverage", sa.Float),
    sa.Column("interval_level", sa.Float),
    sa.Column("chosen_kind", Kind),  # for model_kind 'champion': the kind chosen at that origin
    sa.Column("created_at", sa.DateTime, nullable=False),
)

sa.Index("ix_forecasts_series_run", forecasts.c.series_id, forecasts.c.run_id)
sa.Index("ix_metrics_series_run", metrics.c.series_id, metrics.c.run_id)

# The latest completed run per series that published for it: the basis of both views.
_LATEST_RUN_PER_SERIES = """
    SELECT series_id, run_id FROM (
        SELECT m.series_id, m.run_id,
               ROW_NUMBER() OVER (PARTITION BY m.series_id
                                  ORDER BY r.started_at DESC, r.run_id DESC) AS rn
        FROM (SELECT DISTINCT series_id, run_id FROM {table}) m
        JOIN pipeline_runs r ON r.run_id = m.run_id
        WHERE r.status = 'completed'
    ) ranked WHERE rn = 1
"""

#: The views' SQL as the newest migration defines them.
VIEWS = {
    "latest_forecasts": f"""
        SELECT f.run_id, f.series_id, f.model_kind, f.origin, f.period, f.step,
               f.yhat, f.yhat_lower, f.yhat_upper, f.interval_level,
               f.yhat_lower_outer, f.yhat_upper_outer, f.interval_level_outer, f.model_id
        FROM forecasts f
        JOIN ({_LATEST_RUN_PER_SERIES.format(table="forecasts")}) l ON l.series_id = f.series_id AND l.run_id = f.run_id
        WHERE f.is_champion = TRUE
    """,
    "latest_metrics": f"""
        SELECT m.run_id, m.series_id, m.model_kind, m.holdout_start, m.holdout_end,
               m.mae, m.rmse, m.mape, m.smape, m.mase, m.is_champion, m.model_id
        FROM metrics m
        JOIN ({_LATEST_RUN_PER_SERIES.format(table="metrics")}) l ON l.series_id = m.series_id AND l.run_id = m.run_id
    """,
}
