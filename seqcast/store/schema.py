"""Every table and view for SQL consumers (DESIGN.md, "Tables"); the migrations in `migrations/` build them.

This module describes the newest schema, for queries, for the generated schema document (`docs/schema.md`,
`docs/dbt/sources.yml`, PostgreSQL column comments) and for tests that compare it with what the migrations
create. A change to a table or a view is a new migration (`seqcast/store/migrations/versions/`). Every column
says what it means, in which unit, and which columns key the table.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()

SeriesId = sa.String(255)
Kind = sa.String(32)
Id = sa.String(64)
Sha = sa.String(64)

#: The units words used below.
_VALUE = "in the series' own unit"
_MONTH = "date: the first of the month"
_UTC = "timestamp, UTC"


def _col(name: str, type_: Any, doc: str, **kw: Any) -> sa.Column[Any]:
    return sa.Column(name, type_, comment=doc, **kw)


def _run_id(doc: str = "The run (pipeline_runs.run_id).", **kw: Any) -> sa.Column[Any]:
    return _col("run_id", Id, doc, **kw)


def _series_id(**kw: Any) -> sa.Column[Any]:
    return _col("series_id", SeriesId, "The series, as received.", **kw)


def _model_kind(**kw: Any) -> sa.Column[Any]:
    return _col(
        "model_kind",
        Kind,
        "What made the row: rnn, lstm, gru (a network per series), global_rnn, global_lstm, global_gru (one network "
        "across series), ets, ces, theta (statsforecast), seasonal_naive, naive, combination (the mean of several).",
        **kw,
    )


meta_table = sa.Table(
    "seqcast_meta",
    metadata,
    _col("key", sa.String(64), "Setting name (store_id, data_version).", primary_key=True),
    _col("value", sa.Text, "Its value.", nullable=False),
    comment="seqcast's own bookkeeping: the store's id and a counter that changes with every change of observations.",
)

observations = sa.Table(
    "observations",
    metadata,
    _series_id(primary_key=True),
    _col("period", sa.Date, f"The month ({_MONTH}).", primary_key=True),
    _col("value", sa.Float, f"The observed value ({_VALUE}).", nullable=False),
    _col("batch_id", Id, "The received file that last set this value (ingest_batches.batch_id).", nullable=False),
    _col("ingested_at", sa.DateTime, f"When the value was last set ({_UTC}).", nullable=False),
    _col(
        "is_filled",
        sa.Boolean,
        "Always false here: interpolated months live in the lake only.",
        nullable=False,
        server_default=sa.false(),
    ),
    # Rows clustered by (series_id, period): no separate key index to maintain, and a series is contiguous.
    sqlite_with_rowid=False,
    comment="One row per series and month: the newest value received.",
)

observation_revisions = sa.Table(
    "observation_revisions",
    metadata,
    _col(
        "revision_id",
        sa.Integer,
        "Surrogate key, in the order revisions were applied.",
        primary_key=True,
        autoincrement=True,
    ),
    _series_id(nullable=False, index=True),
    _col("period", sa.Date, f"The revised month ({_MONTH}).", nullable=False),
    _col("old_value", sa.Float, f"The value before ({_VALUE}).", nullable=False),
    _col("new_value", sa.Float, f"The value after ({_VALUE}).", nullable=False),
    _col("batch_id", Id, "The received file that revised it.", nullable=False),
    _col("revised_at", sa.DateTime, f"When ({_UTC}).", nullable=False),
    comment="One row per changed value of an already-stored month; nothing is overwritten without a trace.",
)

#: Statuses of a received file: `applied` (its rows were merged), `duplicate` (the same rows as an applied
#: batch, nothing changed), `rejected` (no usable row), `refused` (not a regular file: a link, a folder),
#: `failed` (an unexpected error: the file stays where it was and the next run tries again).
BATCH_STATUSES = ("applied", "duplicate", "rejected", "refused", "failed")

ingest_batches = sa.Table(
    "ingest_batches",
    metadata,
    _col("batch_id", Id, "The received file's id (also its name in archive/).", primary_key=True),
    _col("source", sa.Text, "The file's name or path as received.", nullable=False),
    _col("archive_path", sa.Text, "Where the file is kept, as received."),
    _col("sha256", Sha, "sha256 of the file's bytes.", nullable=False, index=True),
    _col("received_at", sa.DateTime, f"When it was received ({_UTC}).", nullable=False),
    _col("status", sa.String(16), "applied | duplicate | rejected | refused | failed.", nullable=False),
    _col("error", sa.Text, "Why it was not applied, where it was not."),
    _col("rows_read", sa.Integer, "Data rows in the file.", nullable=False, server_default="0"),
    _col("rows_inserted", sa.Integer, "New months stored.", nullable=False, server_default="0"),
    _col(
        "rows_updated",
        sa.Integer,
        "Stored months revised (see observation_revisions).",
        nullable=False,
        server_default="0",
    ),
    _col("rows_unchanged", sa.Integer, "Rows equal to what was stored.", nullable=False, server_default="0"),
    _col("rows_rejected", sa.Integer, "Rows rejected (see rejected_rows).", nullable=False, server_default="0"),
    # Hash of the rows as parsed (series, month, value): what tells a re-sent file from new data, whatever
    # its bytes (the same numbers under another series id are new rows).
    _col("rows_sha256", Sha, "sha256 of the parsed rows: a re-sent file is told from new data by it.", index=True),
    comment="One row per received file, whatever became of it.",
)

rejected_rows = sa.Table(
    "rejected_rows",
    metadata,
    _col("batch_id", Id, "The received file.", primary_key=True),
    _col("row_number", sa.Integer, "The row's line in the file (1 = the header).", primary_key=True),
    _col(
        "raw", sa.Text, "The row as received (cut at 2,000 characters; the archived file has it whole).", nullable=False
    ),
    _col("reason", sa.Text, "Why it was rejected, naming the field.", nullable=False),
    comment="One row per rejected input row.",
)

#: Statuses of a run.
RUN_STATUSES = ("running", "completed", "failed", "interrupted")

pipeline_runs = sa.Table(
    "pipeline_runs",
    metadata,
    _run_id("The run's id (UTC start time and a random suffix).", primary_key=True),
    _col("flow_run_id", sa.String(64), "The Prefect flow run, where the run had one."),
    _col("started_at", sa.DateTime, f"When it started ({_UTC}).", nullable=False),
    _col("finished_at", sa.DateTime, f"When it finished ({_UTC}); for a completed run, when it published."),
    _col(
        "status",
        sa.String(16),
        "running | completed | failed | interrupted (stopped, or its process died).",
        nullable=False,
    ),
    _col("new_observations", sa.Integer, "Months added by the run's ingest.", nullable=False, server_default="0"),
    _col("series_trained", sa.Integer, "Series whose models were trained.", nullable=False, server_default="0"),
    _col("series_reused", sa.Integer, "Series whose stored models were reused.", nullable=False, server_default="0"),
    _col(
        "series_skipped",
        sa.Integer,
        "Series not published (too short to model, or failed).",
        nullable=False,
        server_default="0",
    ),
    _col("config_json", sa.Text, "The run's settings (a database password never included)."),
    _col("message", sa.Text, "Why a run failed or was interrupted."),
    # The data folder whose run lock the run held: a dead run is recognised by the next one holding it.
    _col("data_dir", sa.Text, "The data folder the run used."),
    comment="One row per run of the monthly pipeline.",
)

model_runs = sa.Table(
    "model_runs",
    metadata,
    _col(
        "model_id",
        Id,
        "The model's id: data hash and config hash, so the same data and settings give the same id.",
        primary_key=True,
    ),
    _series_id(nullable=False, index=True),
    _model_kind(nullable=False),
    _col(
        "purpose", sa.String(16), "holdout (fit without the holdout window) | final (fit on all data).", nullable=False
    ),
    _col("config_hash", sa.String(32), "Hash of the model settings and the model code version.", nullable=False),
    _col(
        "data_hash",
        sa.String(64),
        "Hash of the series' rows the model was fit on (and a retrain mark when a degraded series was retrained).",
        nullable=False,
    ),
    _col("trained_at", sa.DateTime, f"When it was first published ({_UTC}).", nullable=False),
    _col("train_seconds", sa.Float, "Training time (seconds).", nullable=False),
    _col("epochs", sa.Integer, "Epochs trained (0 for statistical models).", nullable=False),
    _col("artifact_path", sa.Text, "The model file (under models/; may be pruned with seqcast prune).", nullable=False),
    _run_id("The run that first published it."),
    # sha256 of the artifact file as written; a file that no longer matches is never used.
    _col("artifact_sha256", Sha, "sha256 of the model file as written; a file that differs is never loaded."),
    comment="One row per trained model (a reused model is not recorded again).",
)

training_history = sa.Table(
    "training_history",
    metadata,
    _col("model_id", Id, "The model (model_runs.model_id).", primary_key=True),
    _col("epoch", sa.Integer, "Epoch, from 1.", primary_key=True),
    _col("train_loss", sa.Float, "Mean training loss (MSE on the scaled series).", nullable=False),
    _col("val_loss", sa.Float, "Validation loss (MSE on the scaled series), where a validation part was kept."),
    comment="One row per network and epoch: the loss curve.",
)

SCORE_COLUMNS = ("mae", "rmse", "mape", "smape", "mase")
_SCORE_DOCS = {
    "mae": f"Mean absolute error ({_VALUE}).",
    "rmse": f"Root mean squared error ({_VALUE}).",
    "mape": "Mean absolute percentage error (percent; zero actuals skipped).",
    "smape": "Symmetric MAPE (percent, 0-200).",
    "mase": "Mean absolute scaled error: MAE over the in-sample mean absolute lag-12 (seasonal naive) error of "
    "the training part (unitless; below 1 beats seasonal naive in-sample).",
}


def _score_columns() -> list[sa.Column[float]]:
    """The accuracy columns shared by `metrics` and `backtest_metrics`."""
    return [_col(name, sa.Float, _SCORE_DOCS[name]) for name in SCORE_COLUMNS]


metrics = sa.Table(
    "metrics",
    metadata,
    _run_id(primary_key=True),
    _series_id(primary_key=True),
    _model_kind(primary_key=True),
    _col("holdout_start", sa.Date, f"First month of the holdout window ({_MONTH}).", nullable=False),
    _col("holdout_end", sa.Date, f"Last month of the holdout window ({_MONTH}).", nullable=False),
    *_score_columns(),
    _col("is_champion", sa.Boolean, "Whether this kind's forecast is the one published.", nullable=False),
    _col("model_id", Id, "The holdout model (model_runs.model_id), for trained kinds."),
    comment="One row per run, series and model: the holdout window's scores (multi-step, no peeking).",
)


def _forecast_columns() -> list[sa.Column[Any]]:
    """The forecast's own columns, shared by `forecasts` and the ledger."""
    return [
        _col("origin", sa.Date, f"The last observed month the forecast was made from ({_MONTH}).", nullable=False),
        _col("step", sa.Integer, "Months ahead of the origin (1 = the next month).", nullable=False),
        _col("yhat", sa.Float, f"The point forecast ({_VALUE}).", nullable=False),
        _col("yhat_lower", sa.Float, f"Lower bound of the interval_level interval ({_VALUE})."),
        _col("yhat_upper", sa.Float, f"Upper bound of the interval_level interval ({_VALUE})."),
        _col("interval_level", sa.Float, "Nominal coverage of yhat_lower..yhat_upper (0.8 by default)."),
        _col("is_champion", sa.Boolean, "Whether this is the published (champion's) forecast.", nullable=False),
        _col("model_id", Id, "The final model (model_runs.model_id), for trained kinds."),
        # The second, wider interval (interval_level_outer, 95% by default); yhat_lower/upper keep the first.
        _col("yhat_lower_outer", sa.Float, f"Lower bound of the interval_level_outer interval ({_VALUE})."),
        _col("yhat_upper_outer", sa.Float, f"Upper bound of the interval_level_outer interval ({_VALUE})."),
        _col("interval_level_outer", sa.Float, "Nominal coverage of the outer interval (0.95 by default)."),
    ]


forecasts = sa.Table(
    "forecasts",
    metadata,
    _run_id(primary_key=True),
    _series_id(primary_key=True),
    _model_kind(primary_key=True),
    _col("period", sa.Date, f"The forecast month ({_MONTH}).", primary_key=True),
    *_forecast_columns(),
    comment="One row per run, series, model and future month. A rerun whose forecast of a series is unchanged "
    "writes no rows for it: the earlier run's rows stand (series_status.forecast_run_id).",
)

#: Statuses of a series in a run.
SERIES_STATUSES = ("trained", "reused", "skipped", "failed")

series_status = sa.Table(
    "series_status",
    metadata,
    _run_id(primary_key=True),
    _series_id(primary_key=True),
    _col(
        "status",
        sa.String(16),
        "trained | reused (data and config unchanged) | skipped (too short) | failed.",
        nullable=False,
    ),
    _col("reason", sa.Text, "Why, in words: what made the published forecast, what was degraded or failed."),
    _col(
        "degraded",
        sa.Boolean,
        "The series' published forecasts did clearly worse than their holdout "
        "promised (see forecast_accuracy); it was retrained this run.",
        nullable=False,
        server_default=sa.false(),
    ),
    _col(
        "forecast_run_id",
        Id,
        "The run whose forecasts rows are this series' published forecast: this run, or "
        "an earlier one when the forecast did not change.",
    ),
    _col("forecast_sha256", Sha, "Hash of the series' forecast rows: what tells a changed forecast."),
    comment="One row per run and series: what the run did with it and why.",
)

backtest_metrics = sa.Table(
    "backtest_metrics",
    metadata,
    _col("backtest_id", Id, "The backtest (UTC start time).", primary_key=True),
    _series_id(primary_key=True),
    _model_kind(primary_key=True),
    _col("origin", sa.Date, f"The window's last training month ({_MONTH}).", primary_key=True),
    _col("horizon", sa.Integer, "Months forecast from the origin.", nullable=False),
    *_score_columns(),
    _col("coverage", sa.Float, "Share of the window's actuals inside the interval (0-1)."),
    _col("interval_level", sa.Float, "Nominal coverage of that interval."),
    _col("chosen_kind", Kind, "For model_kind 'champion': the kind chosen at that origin."),
    _col("created_at", sa.DateTime, f"When the backtest ran ({_UTC}).", nullable=False),
    comment="One row per backtest, series, model and origin (seqcast backtest).",
)

forecast_outcomes = sa.Table(
    "forecast_outcomes",
    metadata,
    _run_id("The run that published the forecast.", primary_key=True),
    _series_id(primary_key=True),
    _model_kind(primary_key=True),
    _col("period", sa.Date, f"The forecast month, now observed ({_MONTH}).", primary_key=True),
    *_forecast_columns(),
    _col("actual", sa.Float, f"The observed value of the month ({_VALUE}); a revision updates it.", nullable=False),
    _col("error", sa.Float, f"actual - yhat ({_VALUE}; positive: the forecast was too low).", nullable=False),
    _col(
        "scale",
        sa.Float,
        "MASE scale: the in-sample mean absolute lag-12 error of the series up to the origin "
        f"({_VALUE}; lag 1 under 13 months), as in metrics.",
    ),
    _col("scaled_error", sa.Float, "|error| / scale (unitless): its mean is the realised MASE."),
    _col("smape_term", sa.Float, "200 |error| / (|actual| + |yhat|) (percent): its mean is the realised sMAPE."),
    _col("covered", sa.Boolean, "actual within yhat_lower..yhat_upper."),
    _col("covered_outer", sa.Boolean, "actual within yhat_lower_outer..yhat_upper_outer."),
    _col("published_at", sa.DateTime, f"When the forecast was published (the run's finished_at, {_UTC})."),
    _col("recorded_at", sa.DateTime, f"When the outcome was first recorded ({_UTC}).", nullable=False),
    _col("revised_at", sa.DateTime, f"When the actual was last revised ({_UTC}); empty if never."),
    comment="The forecast ledger: one row per published forecast row whose month has been observed, for every "
    "model a run scored. Never pruned.",
)

sa.Index("ix_forecasts_series_run", forecasts.c.series_id, forecasts.c.run_id)
sa.Index("ix_metrics_series_run", metrics.c.series_id, metrics.c.run_id)
sa.Index("ix_forecasts_series_period", forecasts.c.series_id, forecasts.c.period)
sa.Index("ix_forecast_outcomes_series_period", forecast_outcomes.c.series_id, forecast_outcomes.c.period)

# The latest completed run per series that published for it: the basis of both latest_* views.
_LATEST_RUN_PER_SERIES = """
    SELECT series_id, run_id, finished_at FROM (
        SELECT m.series_id, m.run_id, r.finished_at,
               ROW_NUMBER() OVER (PARTITION BY m.series_id
                                  ORDER BY r.started_at DESC, r.run_id DESC) AS rn
        FROM (SELECT DISTINCT series_id, run_id FROM {table}) m
        JOIN pipeline_runs r ON r.run_id = m.run_id
        WHERE r.status = 'completed'
    ) ranked WHERE rn = 1
"""

#: The realised-accuracy columns, over the rows of forecast_outcomes in `o` (grouped by the caller).
_ACCURACY = """
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
"""

#: Each outcome with the rank of its month among the series' realised months (1 = the latest).
_RANKED_OUTCOMES = """
    SELECT x.*, DENSE_RANK() OVER (PARTITION BY x.series_id ORDER BY x.period DESC) AS month_rank
    FROM forecast_outcomes x
"""

#: The two windows of the accuracy views: the series' last 12 realised months, and all of them.
_WINDOWS = "(SELECT 'last_12_months' AS window_name, 12 AS months UNION ALL SELECT 'all_time', NULL)"


def _accuracy_view(champion_only: bool) -> str:
    group = "o.series_id, w.window_name" if champion_only else "o.series_id, o.model_kind, w.window_name"
    where = "WHERE o.is_champion = TRUE" if champion_only else ""
    return f"""
        SELECT {group}, {_ACCURACY}
        FROM ({_RANKED_OUTCOMES}) o
        JOIN {_WINDOWS} w
          ON w.months IS NULL OR o.month_rank <= w.months
        {where}
        GROUP BY {group}
    """


#: The views' SQL as the newest migration defines them.
VIEWS = {
    "latest_forecasts": f"""
        SELECT f.run_id, f.series_id, f.model_kind, f.origin, f.period, f.step,
               f.yhat, f.yhat_lower, f.yhat_upper, f.interval_level,
               f.yhat_lower_outer, f.yhat_upper_outer, f.interval_level_outer, f.model_id,
               l.finished_at AS published_at
        FROM forecasts f
        JOIN ({_LATEST_RUN_PER_SERIES.format(table="forecasts")}) l ON l.series_id = f.series_id AND l.run_id = f.run_id
        WHERE f.is_champion = TRUE
    """,
    "latest_metrics": f"""
        SELECT m.run_id, m.series_id, m.model_kind, m.holdout_start, m.holdout_end,
               m.mae, m.rmse, m.mape, m.smape, m.mase, m.is_champion, m.model_id,
               l.finished_at AS published_at
        FROM metrics m
        JOIN ({_LATEST_RUN_PER_SERIES.format(table="metrics")}) l ON l.series_id = m.series_id AND l.run_id = m.run_id
    """,
    "forecast_accuracy": _accuracy_view(champion_only=False),
    "champion_accuracy": _accuracy_view(champion_only=True),
}

_ACCURACY_DOCS = {
    "series_id": "The series.",
    "window_name": "last_12_months (the series' 12 latest realised months) | all_time.",
    "outcomes": "Realised forecast rows in the window (a month forecast by several runs counts once per run).",
    "months": "Distinct realised months in the window.",
    "first_period": f"First realised month ({_MONTH}).",
    "last_period": f"Last realised month ({_MONTH}).",
    "mae": f"Realised mean absolute error ({_VALUE}).",
    "mase": "Realised MASE: mean of |error| / scale, scaled as in metrics (unitless).",
    "smape": "Realised sMAPE (percent, 0-200).",
    "bias": f"Mean of yhat - actual ({_VALUE}; positive: forecasts too high).",
    "coverage": "Share of actuals inside the interval_level interval (0-1).",
    "interval_level": "Nominal coverage of that interval.",
    "coverage_outer": "Share of actuals inside the outer interval (0-1).",
    "interval_level_outer": "Nominal coverage of the outer interval.",
    "last_published_at": f"When the newest forecast in the window was published ({_UTC}).",
}

#: What each view is and what its columns mean (columns taken from a table keep that table's words).
VIEW_DOCS: dict[str, tuple[str, sa.Table | None, dict[str, str]]] = {
    "latest_forecasts": (
        "One row per series and future month: the champion's forecast of each series' latest completed run that "
        "published it.",
        forecasts,
        {"published_at": f"When that run published ({_UTC})."},
    ),
    "latest_metrics": (
        "One row per series and model: the holdout metrics of each series' latest completed run that scored it.",
        metrics,
        {"published_at": f"When that run published ({_UTC})."},
    ),
    "forecast_accuracy": (
        "One row per series, model and window: how published forecasts did once their months were observed.",
        None,
        {**_ACCURACY_DOCS, "model_kind": "The model whose forecasts these were."},
    ),
    "champion_accuracy": (
        "One row per series and window: how the published (champion) forecasts did, whichever model made them.",
        None,
        _ACCURACY_DOCS,
    ),
}


def keys(name: str) -> tuple[str, ...]:
    """The columns that identify a row of a table or view (the schema document's "key")."""
    if name in metadata.tables:
        return tuple(c.name for c in metadata.tables[name].primary_key.columns)
    return {
        "latest_forecasts": ("series_id", "period"),
        "latest_metrics": ("series_id", "model_kind"),
        "forecast_accuracy": ("series_id", "model_kind", "window_name"),
        "champion_accuracy": ("series_id", "window_name"),
    }[name]
