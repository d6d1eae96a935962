"""Every write of the store, each one transaction: received files, runs, published results, backtests.

Untrusted strings (series ids, file names, raw rows) are only ever bound as parameters; text that a database
cannot hold (a NUL byte, which PostgreSQL refuses) is escaped before it is written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from seqcast.store.schema import (
    backtest_metrics,
    forecast_outcomes,
    ingest_batches,
    meta_table,
    metrics,
    model_runs,
    pipeline_runs,
    rejected_rows,
    series_status,
    training_history,
)
from seqcast.store.schema import forecasts as forecasts_table

#: Longest raw row text kept in `rejected_rows.raw` (the archived file keeps the whole row).
MAX_RAW = 2000


def utcnow() -> datetime:
    """Naive UTC timestamp: every timestamp column holds UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def as_date(value: Any) -> date:
    """A pandas/py timestamp or ISO string as a date."""
    return pd.Timestamp(value).date()


def storable_text(text: object, limit: int | None = None) -> str:
    """Text any database stores as given: NUL (refused by PostgreSQL) written as `\\x00`; cut at `limit`."""
    out = str(text).replace("\x00", "\\x00")
    if limit is not None and len(out) > limit:
        out = f"{out[:limit]}... ({len(out)} characters)"
    return out


def _serialise_writers(conn: Connection) -> None:
    """Make this transaction the only writer of observations and models until it ends.

    Ingest compares the stored values with new ones before writing revisions; publish checks which models are
    already recorded before inserting. Two such transactions at once (two folders sharing a PostgreSQL
    database, or an ingest beside a run) would both see a row as missing and collide, or record a revision
    from a stale value. A no-op update of one meta row first takes its row lock on PostgreSQL (the other
    writer waits, then reads what this one committed) and the write lock on SQLite (never a stale snapshot).
    """
    conn.execute(meta_table.update().where(meta_table.c.key == "data_version").values(value=meta_table.c.value))


def _bump_data_version(conn: Connection) -> None:
    conn.execute(
        meta_table.update()
        .where(meta_table.c.key == "data_version")
        .values(value=sa.cast(sa.cast(meta_table.c.value, sa.Integer) + 1, sa.Text))
    )


# --------------------------------------------------------------------------------------------- ingest


@dataclass(frozen=True)
class BatchCounts:
    status: str  # applied | duplicate
    rows_read: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_rejected: int
    duplicate_of: str | None = None


def rows_digest(rows: pd.DataFrame) -> str:
    """Hash of a file's parsed rows (series id, month, value), in file order."""
    hashed = pd.util.hash_pandas_object(rows[["series_id", "period", "value"]], index=False)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()


def _batch_row(batch: dict[str, Any]) -> dict[str, Any]:
    row = dict(batch)
    for key in ("source", "error", "archive_path"):
        if row.get(key) is not None:
            row[key] = storable_text(row[key])
    return row


def record_batch(engine: Engine, batch: dict[str, Any], rejected: pd.DataFrame | None = None) -> None:
    """Record a file that changes no observations (rejected, refused or failed), with its rejected rows."""
    with engine.begin() as conn:
        conn.execute(ingest_batches.insert(), [_batch_row(batch)])
        if rejected is not None and len(rejected):
            _insert_rejected(conn, rejected, batch["batch_id"])


def apply_batch(engine: Engine, batch: dict[str, Any], rows: pd.DataFrame, rejected: pd.DataFrame) -> BatchCounts:
    """Merge one file's valid rows, record revisions, rejects and the batch row: one transaction.

    A file whose rows are exactly those of an applied batch (same series, months and values, whatever its
    name or format) is a duplicate: nothing is merged, so a stale copy sent again cannot undo later revisions.

    Args:
        batch: the `ingest_batches` row so far (`rows_read` included; counts and status are set here).
        rows: valid observations, columns series_id, period (datetime64, first of month), value;
            unique on (series_id, period).
        rejected: columns row_number, raw, reason.
    """
    now = utcnow()
    batch_id = batch["batch_id"]
    digest = rows_digest(rows)
    rows_read = int(batch["rows_read"])
    with engine.begin() as conn:
        _serialise_writers(conn)
        earlier = conn.execute(
            sa.select(ingest_batches.c.batch_id)
            .where(ingest_batches.c.rows_sha256 == digest, ingest_batches.c.status == "applied")
            .limit(1)
        ).scalar()
        if earlier is not None:
            counts = BatchCounts("duplicate", rows_read, 0, 0, rows_read - len(rejected), len(rejected), earlier)
            error = f"same rows as batch {earlier}"
        else:
            if _any_stored(conn, rows["series_id"].unique()):
                inserted, updated = _merge(conn, rows, batch_id, now)
            else:  # all new: no merge needed (the common case of a first load)
                _bulk_insert(conn, "observations", rows, batch_id, now)
                inserted, updated = len(rows), 0
            unchanged = rows_read - inserted - updated - len(rejected)
            counts = BatchCounts("applied", rows_read, inserted, updated, unchanged, len(rejected))
            error = None
            if inserted or updated:
                _bump_data_version(conn)
        conn.execute(
            ingest_batches.insert(),
            [
                _batch_row(
                    {
                        **batch,
                        "status": counts.status,
                        "error": error,
                        "rows_sha256": digest,
                        "rows_inserted": counts.rows_inserted,
                        "rows_updated": counts.rows_updated,
                        "rows_unchanged": counts.rows_unchanged,
                        "rows_rejected": counts.rows_rejected,
                    }
                )
            ],
        )
        if len(rejected):
            _insert_rejected(conn, rejected, batch_id)
    return counts


def _any_stored(conn: Connection, series_ids: Sequence[str] | np.ndarray, chunk: int = 500) -> bool:
    from seqcast.store.schema import observations

    for start in range(0, len(series_ids), chunk):
        part = [str(s) for s in series_ids[start : start + chunk]]
        found = conn.execute(
            sa.select(sa.literal(1)).select_from(observations).where(observations.c.series_id.in_(part)).limit(1)
        ).first()
        if found is not None:
            return True
    return False


_STAGE = "seqcast_incoming"


def _merge(conn: Connection, rows: pd.DataFrame, batch_id: str, now: datetime) -> tuple[int, int]:
    """Merge rows into stored series inside the database: staged in a temporary table, then the revisions and
    an upsert of every row as two set statements (`WHERE TRUE` tells SQLite's upsert from a join). Memory stays
    that of the parsed file, however many rows revise stored ones. Returns (inserted, updated)."""
    postgres = conn.dialect.name == "postgresql"
    period_type = "DATE" if postgres else "TEXT"
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_STAGE}")
    conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE {_STAGE} (series_id VARCHAR(255) NOT NULL, period {period_type} NOT NULL, "
        f"value DOUBLE PRECISION NOT NULL, batch_id VARCHAR(64), ingested_at {'TIMESTAMP' if postgres else 'TEXT'}, "
        "is_filled BOOLEAN, PRIMARY KEY (series_id, period))" + ("" if postgres else " WITHOUT ROWID")
    )
    try:
        _bulk_insert(conn, _STAGE, rows, batch_id, now)
        if postgres:
            conn.exec_driver_sql(f"ANALYZE {_STAGE}")
        stamp = {"b": batch_id, "t": now}
        typed = (sa.bindparam("b", type_=sa.String), sa.bindparam("t", type_=sa.DateTime))
        same_key = "o.series_id = i.series_id AND o.period = i.period"
        revised = conn.execute(
            sa.text(
                "INSERT INTO observation_revisions (series_id, period, old_value, new_value, batch_id, revised_at) "
                f"SELECT o.series_id, o.period, o.value, i.value, :b, :t FROM {_STAGE} i "
                f"JOIN observations o ON {same_key} WHERE o.value <> i.value"
            ).bindparams(*typed),
            stamp,
        )
        # The revisions, counted, then one upsert: new months inserted, changed values updated.
        updated = revised.rowcount
        changed = conn.execute(
            sa.text(
                "INSERT INTO observations (series_id, period, value, batch_id, ingested_at, is_filled) "
                f"SELECT i.series_id, i.period, i.value, :b, :t, FALSE FROM {_STAGE} i WHERE TRUE "
                "ON CONFLICT (series_id, period) DO UPDATE SET value = excluded.value, batch_id = excluded.batch_id, "
                "ingested_at = excluded.ingested_at, is_filled = FALSE WHERE observations.value <> excluded.value"
            ).bindparams(*typed),
            stamp,
        ).rowcount
        inserted = changed - updated
    finally:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_STAGE}")
    return int(inserted), int(updated)


def _bulk_insert(conn: Connection, table: str, rows: pd.DataFrame, batch_id: str, now: datetime) -> None:
    """Insert many observation rows through the driver's executemany, skipping per-row SQL type processing.

    This is the hot path of ingest (a million rows): values are rendered once, as the dialect stores
    them (ISO text on SQLite, date objects elsewhere), and still bound as parameters. `table` is one of
    the fixed names of this module, never input.
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
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"
    sids = rows["series_id"].tolist()
    values = rows["value"].astype(float).tolist()
    params: Iterable[Any] = zip(sids, periods, values, repeat(batch_id), repeat(stamp), repeat(False))
    if conn.dialect.paramstyle == "named":
        params = ({f"p{i + 1}": v for i, v in enumerate(p)} for p in params)
    # The driver's own executemany, streaming the rows, inside this connection's transaction.
    cursor = conn.connection.cursor()
    try:
        cursor.executemany(sql, params)  # type: ignore[arg-type]  # drivers take any iterable
    finally:
        cursor.close()


def _insert_rejected(conn: Connection, rejected: pd.DataFrame, batch_id: str) -> None:
    records = [
        {
            "batch_id": batch_id,
            "row_number": int(n),
            "raw": storable_text(raw, MAX_RAW),
            "reason": storable_text(reason, MAX_RAW),
        }
        for n, raw, reason in zip(rejected["row_number"], rejected["raw"], rejected["reason"], strict=True)
    ]
    insert(conn, rejected_rows, records)


def insert(conn: Connection, table: sa.Table, records: list[dict[str, Any]], chunk: int = 20_000) -> None:
    for start in range(0, len(records), chunk):
        conn.execute(table.insert(), records[start : start + chunk])


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


def finish_run(engine: Engine, run_id: str, status: str, message: str) -> None:
    """End a run that is still running as `failed` or `interrupted`; a completed run stays completed."""
    with engine.begin() as conn:
        conn.execute(
            pipeline_runs.update()
            .where(pipeline_runs.c.run_id == run_id, pipeline_runs.c.status == "running")
            .values(status=status, finished_at=utcnow(), message=storable_text(message, 2000))
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
        for table in (metrics, forecasts_table, series_status):
            conn.execute(table.delete().where(table.c.run_id == rows.run_id))
        from seqcast.store.reads import known_model_ids_in

        known = known_model_ids_in(conn, [m["model_id"] for m in rows.model_runs])
        fresh_models = [m for m in rows.model_runs if m["model_id"] not in known]
        fresh_ids = {m["model_id"] for m in fresh_models}
        insert(conn, model_runs, fresh_models)
        insert(conn, training_history, [h for h in rows.training_history if h["model_id"] in fresh_ids])
        insert(conn, metrics, rows.metrics)
        insert(conn, forecasts_table, rows.forecasts)
        insert(
            conn,
            series_status,
            [{**s, "reason": None if s["reason"] is None else storable_text(s["reason"])} for s in rows.series_status],
        )
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


def write_backtest(engine: Engine, backtest_id: str, scores: pd.DataFrame, horizon: int, level: float) -> None:
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
        for r in scores.to_dict("records")
    ]
    with engine.begin() as conn:
        insert(conn, backtest_metrics, records)


def replace_outcomes(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """Write forecast outcomes, replacing any recorded before for the same forecast row: one transaction."""
    key = ("run_id", "series_id", "model_kind", "period")
    delete = forecast_outcomes.delete().where(*(forecast_outcomes.c[k] == sa.bindparam(f"k_{k}") for k in key))
    with engine.begin() as conn:
        _serialise_writers(conn)
        for start in range(0, len(rows), 20_000):
            part = rows[start : start + 20_000]
            conn.execute(delete, [{f"k_{k}": r[k] for k in key} for r in part])
            conn.execute(forecast_outcomes.insert(), part)
