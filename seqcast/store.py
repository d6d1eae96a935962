"""The SQL side: schema of every table and view, created on first use, and the transactions that write them.

Everything untrusted (series ids, file names) is bound as a parameter; no SQL is built from data.
"""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
metadata = sa.MetaData()

SeriesId = sa.String(255)
Kind = sa.String(32)
Id = sa.String(64)

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

ingest_batches = sa.Table(
    "ingest_batches",
    metadata,
    sa.Column("batch_id", Id, primary_key=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("archive_path", sa.Text),
    sa.Column("sha256", sa.String(64), nullable=False, index=True),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # applied | duplicate | rejected
    sa.Column("error", sa.Text),
    sa.Column("rows_read", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rows_inserted", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rows_updated", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rows_unchanged", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rows_rejected", sa.Integer, nullable=False, server_default="0"),
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
)

training_history = sa.Table(
    "training_history",
    metadata,
    sa.Column("model_id", Id, primary_key=True),
    sa.Column("epoch", sa.Integer, primary_key=True),
    sa.Column("train_loss", sa.Float, nullable=False),
    sa.Column("val_loss", sa.Float),
)


def _score_columns() -> list[sa.Column]:
    """The accuracy columns shared by `metrics` and `backtest_metrics` (MAPE and sMAPE in percent)."""
    return [sa.Column(name, sa.Float) for name in ("mae", "rmse", "mape", "smape", "mase")]


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
)

series_status = sa.Table(
    "series_status",
    metadata,
    sa.Column("run_id", Id, primary_key=True),
    sa.Column("series_id", SeriesId, primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # trained | reused | skipped
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

# The latest completed run per series that produced metrics for it: the basis of both views.
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


def utcnow() -> datetime:
    """Naive UTC timestamp: every timestamp column holds UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def open_engine(url: str) -> Engine:
    """Create the engine and the schema (tables, then views) if missing."""
    engine = sa.create_engine(url, future=True)
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        _tune_sqlite(engine)
    # Two processes creating the schema at once would race on CREATE TABLE; serialise them (an advisory lock
    # on PostgreSQL, the write lock taken up front on SQLite).
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(74656174)")
        metadata.create_all(conn)
        existing = set(sa.inspect(conn).get_view_names())
        for name, body in VIEWS.items():
            if name not in existing:
                conn.exec_driver_sql(f"CREATE VIEW {name} AS {body}")
        row = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == "store_id")).first()
        if row is None:
            conn.execute(
                meta_table.insert(),
                [
                    {"key": "store_id", "value": uuid.uuid4().hex},
                    {"key": "schema_version", "value": str(SCHEMA_VERSION)},
                    {"key": "data_version", "value": "0"},
                ],
            )
    return engine


def _serialise_writers(conn: Connection) -> None:
    """Make this transaction the only writer of observations and models until it ends.

    Ingest reads the stored values before writing new ones and revisions; publish checks which models are
    already recorded before inserting. Two such transactions at once (two folders sharing a PostgreSQL
    database, or an ingest beside a run) would both see a row as missing and collide, or record a revision
    from a stale value. A no-op update of one meta row first takes its row lock on PostgreSQL (the other
    writer waits, then reads what this one committed) and the write lock on SQLite (never a stale snapshot).
    """
    conn.execute(meta_table.update().where(meta_table.c.key == "data_version").values(value=meta_table.c.value))


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        # busy_timeout waits out short locks; WAL lets SQL consumers read while a run writes.
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA page_size=8192")  # takes effect on a new database only; fewer, fuller pages
        _use_wal(cur)
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache for bulk ingest
        cur.close()
        # Transactions are begun by SQLAlchemy (below), not guessed by the driver, so DDL is transactional too.
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # BEGIN IMMEDIATE (asked for with execution option sqlite_begin) takes the write lock up front.
        conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', '')}".strip())


def _use_wal(cur: Any, attempts: int = 200) -> None:
    """Switch the database to WAL once. Connections opening a new file at the same moment all try to, and
    that switch does not wait on the busy timeout: retry briefly until one of them has made it."""
    for attempt in range(attempts):
        try:
            if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)


def get_meta(conn: Connection, key: str) -> str | None:
    return conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == key)).scalar()


def store_identity(engine: Engine) -> tuple[str, int]:
    """(store_id, data_version): changes whenever observations change, so it can key caches."""
    with engine.connect() as conn:
        return str(get_meta(conn, "store_id")), int(get_meta(conn, "data_version") or 0)


def _bump_data_version(conn: Connection) -> None:
    conn.execute(
        meta_table.update()
        .where(meta_table.c.key == "data_version")
        .values(value=sa.cast(sa.cast(meta_table.c.value, sa.Integer) + 1, sa.Text))
    )


# --------------------------------------------------------------------------------------------- ingest


@dataclass(frozen=True)
class BatchCounts:
    rows_read: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_rejected: int


def find_applied_batch(engine: Engine, sha256: str) -> str | None:
    """The batch id of an already-applied file with this content, if any."""
    with engine.connect() as conn:
        return conn.execute(
            sa.select(ingest_batches.c.batch_id)
            .where(ingest_batches.c.sha256 == sha256, ingest_batches.c.status == "applied")
            .limit(1)
        ).scalar()


def record_batch(engine: Engine, batch: dict[str, Any], rejected: pd.DataFrame | None = None) -> None:
    """Record a batch that changes no observations (duplicate or rejected file)."""
    with engine.begin() as conn:
        conn.execute(ingest_batches.insert(), [batch])
        if rejected is not None and len(rejected):
            conn.execute(rejected_rows.insert(), _records(rejected, batch["batch_id"]))


def apply_batch(engine: Engine, batch: dict[str, Any], rows: pd.DataFrame, rejected: pd.DataFrame) -> BatchCounts:
    """Upsert one file's valid rows, record revisions, rejects and the batch row: one transaction.

    Args:
        rows: valid observations, columns series_id, period (datetime64, first of month), value;
            unique on (series_id, period).
        rejected: columns row_number, raw, reason.
    """
    now = utcnow()
    batch_id = batch["batch_id"]
    with engine.begin() as conn:
        _serialise_writers(conn)
        existing = _existing_values(conn, rows["series_id"].unique())
        if existing.empty:  # all new: skip the merge (the common case of a first load)
            merged = rows.assign(old_value=np.nan)
        else:
            merged = rows.merge(existing, on=["series_id", "period"], how="left", sort=False)
        is_new = merged["old_value"].isna().to_numpy()
        changed = ~is_new & (merged["old_value"].to_numpy() != merged["value"].to_numpy())
        new_rows = merged.loc[is_new]
        changed_rows = merged.loc[changed]

        _bulk_insert_observations(conn, new_rows, batch_id, now)
        if len(changed_rows):
            upd = [
                {"b_sid": s, "b_period": p.date(), "b_value": v, "b_batch": batch_id, "b_at": now}
                for s, p, v in zip(
                    changed_rows["series_id"], changed_rows["period"], changed_rows["value"], strict=False
                )
            ]
            conn.execute(
                observations.update()
                .where(
                    observations.c.series_id == sa.bindparam("b_sid"),
                    observations.c.period == sa.bindparam("b_period"),
                )
                .values(
                    value=sa.bindparam("b_value"),
                    batch_id=sa.bindparam("b_batch"),
                    ingested_at=sa.bindparam("b_at"),
                    is_filled=False,
                ),
                upd,
            )
            conn.execute(
                observation_revisions.insert(),
                [
                    {
                        "series_id": s,
                        "period": p.date(),
                        "old_value": o,
                        "new_value": v,
                        "batch_id": batch_id,
                        "revised_at": now,
                    }
                    for s, p, o, v in zip(
                        changed_rows["series_id"],
                        changed_rows["period"],
                        changed_rows["old_value"],
                        changed_rows["value"],
                        strict=False,
                    )
                ],
            )
        counts = BatchCounts(
            rows_read=int(batch["rows_read"]),
            rows_inserted=len(new_rows),
            rows_updated=len(changed_rows),
            rows_unchanged=int(batch["rows_read"]) - len(new_rows) - len(changed_rows) - len(rejected),
            rows_rejected=len(rejected),
        )
        conn.execute(ingest_batches.insert(), [{**batch, **counts.__dict__, "status": "applied"}])
        if len(rejected):
            conn.execute(rejected_rows.insert(), _records(rejected, batch_id))
        if counts.rows_inserted or counts.rows_updated:
            _bump_data_version(conn)
    return counts


def _bulk_insert_observations(
    conn: Connection, rows: pd.DataFrame, batch_id: str, now: datetime, filled: bool = False
) -> None:
    """Insert many observations through the driver's executemany, skipping per-row SQL type processing.

    This is the hot path of ingest (a million rows): values are rendered once, as the dialect stores
    them (ISO text on SQLite, date objects elsewhere), and still bound as parameters.
    """
    if rows.empty:
        return
    days = rows["period"].to_numpy().astype("datetime64[D]")
    if conn.dialect.name == "sqlite":
        periods: list[Any] = np.datetime_as_string(days).tolist()
        stamp: Any = now.strftime("%Y-%m-%d %H:%M:%S.%f")
    else:
        periods = days.astype(object).tolist()
        stamp = now
    marker = {"qmark": "?", "numeric": ":{}", "named": ":p{}", "format": "%s", "pyformat": "%s"}[
        conn.dialect.paramstyle
    ]
    columns = ("series_id", "period", "value", "batch_id", "ingested_at", "is_filled")
    placeholders = ", ".join(marker.format(i + 1) for i in range(len(columns)))
    sql = f"INSERT INTO observations ({', '.join(columns)}) VALUES ({placeholders})"
    sids = rows["series_id"].tolist()
    values = rows["value"].astype(float).tolist()
    params: Iterable[Any] = zip(sids, periods, values, repeat(batch_id), repeat(stamp), repeat(filled))
    if conn.dialect.paramstyle == "named":
        params = ({f"p{i + 1}": v for i, v in enumerate(p)} for p in params)
    # The driver's own executemany, streaming the rows, inside this connection's transaction.
    cursor = conn.connection.cursor()
    try:
        cursor.executemany(sql, params)  # type: ignore[arg-type]  # drivers accept any iterable
    finally:
        cursor.close()


def _records(rejected: pd.DataFrame, batch_id: str) -> list[dict[str, Any]]:
    return [
        {"batch_id": batch_id, "row_number": int(n), "raw": str(raw), "reason": str(reason)}
        for n, raw, reason in zip(rejected["row_number"], rejected["raw"], rejected["reason"], strict=False)
    ]


def _existing_values(conn: Connection, series_ids: Sequence[str] | np.ndarray, chunk: int = 500) -> pd.DataFrame:
    frames = []
    for start in range(0, len(series_ids), chunk):
        part = list(series_ids[start : start + chunk])
        result = conn.execute(
            sa.select(observations.c.series_id, observations.c.period, observations.c.value).where(
                observations.c.series_id.in_(part)
            )
        )
        frames.append(pd.DataFrame(result.all(), columns=["series_id", "period", "old_value"]))
    if not frames:
        return pd.DataFrame(
            {
                "series_id": pd.Series(dtype=object),
                "period": pd.Series(dtype="datetime64[us]"),
                "old_value": pd.Series(dtype=float),
            }
        )
    out = pd.concat(frames, ignore_index=True)
    out["series_id"] = out["series_id"].astype(object)
    out["period"] = pd.to_datetime(out["period"]).astype("datetime64[us]")
    out["old_value"] = out["old_value"].astype(float)
    return out


def load_observations(engine: Engine, series_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """Observations as a long frame (series_id, period, value, is_filled), sorted."""
    query = sa.select(
        observations.c.series_id, observations.c.period, observations.c.value, observations.c.is_filled
    ).order_by(observations.c.series_id, observations.c.period)
    if series_ids is not None:
        query = query.where(observations.c.series_id.in_(list(series_ids)))
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).all(), columns=["series_id", "period", "value", "is_filled"])
    frame["series_id"] = frame["series_id"].astype(object)
    frame["period"] = pd.to_datetime(frame["period"]).astype("datetime64[us]")
    frame["value"] = frame["value"].astype(float)
    frame["is_filled"] = frame["is_filled"].astype(bool)
    return frame


def count_observations(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(observations)).scalar() or 0)


# ----------------------------------------------------------------------------------------------- runs


def start_run(engine: Engine, run_id: str, flow_run_id: str | None, config_json: str, data_dir: str) -> None:
    """Record a run as running; runs of the same data folder left 'running' are marked interrupted first.

    Call it holding the data folder's run lock: any other 'running' row of that folder is then a run
    whose process died. Runs of other folders (sharing a PostgreSQL database) are left alone.
    """
    with engine.begin() as conn:
        conn.execute(
            pipeline_runs.update()
            .where(pipeline_runs.c.status == "running", pipeline_runs.c.data_dir == data_dir)
            .values(status="interrupted", message="the process ended before the run finished")
        )
        conn.execute(
            pipeline_runs.insert(),
            [
                {
                    "run_id": run_id,
                    "flow_run_id": flow_run_id,
                    "started_at": utcnow(),
                    "status": "running",
                    "config_json": config_json,
                    "data_dir": data_dir,
                }
            ],
        )


def finish_run_failed(engine: Engine, run_id: str, message: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            pipeline_runs.update()
            .where(pipeline_runs.c.run_id == run_id)
            .values(status="failed", finished_at=utcnow(), message=message[:2000])
        )


@dataclass
class RunRows:
    """Everything one run publishes; written in one transaction by `write_run`."""

    run_id: str
    new_observations: int
    series_trained: int
    series_reused: int
    series_skipped: int
    model_runs: list[dict[str, Any]]
    training_history: list[dict[str, Any]]
    metrics: list[dict[str, Any]]
    forecasts: list[dict[str, Any]]
    series_status: list[dict[str, Any]]


def write_run(engine: Engine, rows: RunRows) -> None:
    """Publish a run: model rows (new ones only), metrics, forecasts, statuses and the completed run row.

    Idempotent per run id: a retried write replaces what an earlier attempt of the same run wrote.
    """
    with engine.begin() as conn:
        _serialise_writers(conn)
        for table in (metrics, forecasts, series_status):
            conn.execute(table.delete().where(table.c.run_id == rows.run_id))
        known = _known_model_ids(conn, [m["model_id"] for m in rows.model_runs])
        fresh_models = [m for m in rows.model_runs if m["model_id"] not in known]
        fresh_ids = {m["model_id"] for m in fresh_models}
        _insert(conn, model_runs, fresh_models)
        _insert(conn, training_history, [h for h in rows.training_history if h["model_id"] in fresh_ids])
        _insert(conn, metrics, rows.metrics)
        _insert(conn, forecasts, rows.forecasts)
        _insert(conn, series_status, rows.series_status)
        conn.execute(
            pipeline_runs.update()
            .where(pipeline_runs.c.run_id == rows.run_id)
            .values(
                status="completed",
                finished_at=utcnow(),
                new_observations=rows.new_observations,
                series_trained=rows.series_trained,
                series_reused=rows.series_reused,
                series_skipped=rows.series_skipped,
            )
        )


def known_model_ids(engine: Engine, ids: list[str]) -> set[str]:
    """Which of these model ids are already recorded in model_runs."""
    with engine.connect() as conn:
        return _known_model_ids(conn, ids)


def _known_model_ids(conn: Connection, ids: list[str]) -> set[str]:
    known: set[str] = set()
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        known |= set(conn.execute(sa.select(model_runs.c.model_id).where(model_runs.c.model_id.in_(part))).scalars())
    return known


def _insert(conn: Connection, table: sa.Table, records: list[dict[str, Any]], chunk: int = 20_000) -> None:
    for start in range(0, len(records), chunk):
        conn.execute(table.insert(), records[start : start + chunk])


def write_backtest(engine: Engine, backtest_id: str, metrics: pd.DataFrame, horizon: int, level: float) -> None:
    """Store one backtest's per-series, per-window metrics in one transaction."""
    now = utcnow()
    records = [
        {
            "backtest_id": backtest_id,
            "series_id": r["series_id"],
            "model_kind": r["model_kind"],
            "origin": as_date(r["origin"]),
            "horizon": horizon,
            **{k: (float(r[k]) if np.isfinite(r[k]) else None) for k in ("mae", "rmse", "mape", "smape", "mase")},
            "coverage": float(r["coverage"]),
            "interval_level": level,
            "chosen_kind": r["chosen"],
            "created_at": now,
        }
        for r in metrics.to_dict("records")
    ]
    with engine.begin() as conn:
        _insert(conn, backtest_metrics, records)


def read_table(engine: Engine, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    """Run a read-only query (fixed SQL text, bound parameters) into a frame."""
    with engine.connect() as conn:
        result = conn.execute(sa.text(sql), params or {})
        return pd.DataFrame(result.all(), columns=list(result.keys()))


@contextmanager
def connect(url: str) -> Iterator[Engine]:
    engine = open_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def as_date(value: Any) -> date:
    """A pandas/py timestamp or ISO string as a date."""
    return pd.Timestamp(value).date()
