"""Every read of the store. Queries are SQLAlchemy expressions or fixed text with bound parameters."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from seqcast.records import Batch, ForecastRow, MetricRow, RunOutcome, Scores, Skip
from seqcast.store.schema import meta_table, model_runs, observations


def get_meta(conn: Connection, key: str) -> str | None:
    value = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == key)).scalar()
    return None if value is None else str(value)


def store_identity(engine: Engine) -> tuple[str, int]:
    """(store_id, data_version): changes whenever observations change, so it can key caches."""
    with engine.connect() as conn:
        return str(get_meta(conn, "store_id")), int(get_meta(conn, "data_version") or 0)


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


def count_batches(engine: Engine) -> int:
    from seqcast.store.schema import ingest_batches

    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(ingest_batches)).scalar() or 0)


def known_model_ids(engine: Engine, ids: list[str]) -> set[str]:
    """Which of these model ids are already recorded in model_runs."""
    with engine.connect() as conn:
        return known_model_ids_in(conn, ids)


def known_model_ids_in(conn: Connection, ids: list[str]) -> set[str]:
    known: set[str] = set()
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        known |= {
            str(m)
            for m in conn.execute(sa.select(model_runs.c.model_id).where(model_runs.c.model_id.in_(part))).scalars()
        }
    return known


def latest_published(engine: Engine, other_than: str = "") -> dict[str, tuple[str, str]]:
    """Per series: the run whose rows are its latest published ones, and their digest (`publish.digest`), as
    runs other than `other_than` published them (a retried publish of a run compares with the runs before it)."""
    rows = read_table(
        engine,
        """
        SELECT series_id, forecast_run_id, forecast_sha256 FROM (
            SELECT s.series_id, s.forecast_run_id, s.forecast_sha256,
                   ROW_NUMBER() OVER (PARTITION BY s.series_id ORDER BY r.started_at DESC, r.run_id DESC) AS rn
            FROM series_status s JOIN pipeline_runs r ON r.run_id = s.run_id
            WHERE r.status = 'completed' AND s.forecast_sha256 IS NOT NULL AND s.run_id <> :run
        ) ranked WHERE rn = 1
        """,
        {"run": other_than},
    )
    return {str(r[0]): (str(r[1]), str(r[2])) for r in rows.itertuples(index=False)}


def past_forecasts(engine: Engine, series_ids: list[str]) -> dict[str, pd.DataFrame]:
    """Per series, the published (champion) forecast of each month now observed, the freshest of each: period,
    yhat, actual, step, run_id (from the ledger)."""
    from seqcast.store.schema import forecast_outcomes as x

    out: dict[str, pd.DataFrame] = {}
    for start in range(0, len(series_ids), 500):
        query = (
            sa.select(x.c.series_id, x.c.period, x.c.yhat, x.c.actual, x.c.step, x.c.run_id)
            .where(x.c.is_champion.is_(True), x.c.series_id.in_(series_ids[start : start + 500]))
            .order_by(x.c.series_id, x.c.period, x.c.published_at, x.c.run_id)
        )
        frame = read_query(engine, query)
        for sid, group in frame.groupby("series_id", sort=False):
            out[str(sid)] = group.drop_duplicates("period", keep="last").reset_index(drop=True)
    return out


def read_query(
    engine: Engine, query: sa.Select[Any] | sa.TextClause, params: dict[str, Any] | None = None
) -> pd.DataFrame:
    """Run a read-only query (an expression, or fixed SQL text with bound parameters) into a frame."""
    with engine.connect() as conn:
        result = conn.execute(query, params or {})
        return pd.DataFrame(result.all(), columns=list(result.keys()))


def select_rows(
    engine: Engine, name: str, series_id: str | None = None, where: dict[str, Any] | None = None
) -> pd.DataFrame:
    """Every row of a table or view of the schema (a fixed name, checked), filtered by bound parameters."""
    from seqcast.store import schema

    if name not in schema.metadata.tables and name not in schema.VIEWS:
        raise ValueError(f"unknown table or view {name!r}")
    clauses = {**(where or {}), **({"series_id": series_id} if series_id is not None else {})}
    table = sa.table(name, *(sa.column(c) for c in clauses))
    query = sa.select(sa.text("*")).select_from(table).where(*(table.c[k] == v for k, v in clauses.items()))
    return read_query(engine, query)


def read_table(engine: Engine, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    """`read_query` of fixed SQL text."""
    return read_query(engine, sa.text(sql), params)


def latest(engine: Engine, view: str, series_id: str | None = None) -> pd.DataFrame:
    """The rows of a `latest_*` view, for one series or all; ordered for reading."""
    if view not in ("latest_forecasts", "latest_metrics"):
        raise ValueError(f"unknown view {view!r}")
    table = sa.table(view, sa.column("series_id"), sa.column("period"), sa.column("model_kind"))
    order = ["series_id", "period"] if view == "latest_forecasts" else ["series_id", "model_kind"]
    query = sa.select(sa.text("*")).select_from(table).order_by(*(table.c[c] for c in order))
    if series_id is not None:
        query = query.where(table.c.series_id == series_id)
    return read_query(engine, query)


def run_outcome(engine: Engine, run_id: str | None, database: str, data_dir: str) -> RunOutcome:
    """A completed run's outcome as published (the latest completed run by default): for `seqcast report`.

    Raises LookupError when there is no such run.
    """
    from seqcast.store import schema

    runs_t = schema.pipeline_runs
    query = sa.select(runs_t).where(runs_t.c.status == "completed")
    if run_id is not None:
        query = query.where(runs_t.c.run_id == run_id)
    with engine.connect() as conn:
        run = conn.execute(query.order_by(runs_t.c.started_at.desc()).limit(1)).mappings().first()
        if run is None:
            raise LookupError(f"no completed run {run_id!r}" if run_id else "no completed run yet")
        rid = str(run["run_id"])
        s_t, m_t, f_t = schema.series_status, schema.metrics, schema.forecasts
        # A series whose forecast did not change has its rows in the run that published them first.
        source = sa.func.coalesce(s_t.c.forecast_run_id, s_t.c.run_id)
        metric_rows = (
            conn.execute(
                sa.select(m_t)
                .join(s_t, sa.and_(s_t.c.series_id == m_t.c.series_id, source == m_t.c.run_id))
                .where(s_t.c.run_id == rid)
            )
            .mappings()
            .all()
        )
        forecast_rows = (
            conn.execute(
                sa.select(f_t)
                .join(s_t, sa.and_(s_t.c.series_id == f_t.c.series_id, source == f_t.c.run_id))
                .where(s_t.c.run_id == rid, f_t.c.is_champion.is_(True))
            )
            .mappings()
            .all()
        )
        statuses = conn.execute(sa.select(s_t).where(s_t.c.run_id == rid).order_by(s_t.c.series_id)).mappings().all()
        b_t = schema.ingest_batches
        batches = (
            conn.execute(
                sa.select(b_t)
                .where(b_t.c.received_at.between(run["started_at"], run["finished_at"]))
                .order_by(b_t.c.received_at)
            )
            .mappings()
            .all()
        )

    def num(value: Any) -> float:
        return float("nan") if value is None else float(value)

    metrics = tuple(
        MetricRow(
            series_id=str(m["series_id"]),
            model_kind=str(m["model_kind"]),
            holdout_start=str(m["holdout_start"]),
            holdout_end=str(m["holdout_end"]),
            scores=Scores(*(num(m[k]) for k in ("mae", "rmse", "mape", "smape", "mase"))),
            is_champion=bool(m["is_champion"]),
            model_id=m["model_id"],
        )
        for m in metric_rows
    )
    forecasts = tuple(
        ForecastRow(
            **{k: f[k] for k in ("series_id", "model_kind", "step", "yhat", "yhat_lower", "yhat_upper", "model_id")},
            origin=str(f["origin"]),
            period=str(f["period"]),
            interval_level=num(f["interval_level"]),
            is_champion=True,
        )
        for f in forecast_rows
    )
    columns = {c.name for c in dataclasses.fields(Batch)} - {"series"}
    return RunOutcome(
        run_id=rid,
        new_observations=int(run["new_observations"]),
        revised_observations=sum(int(b["rows_updated"]) for b in batches),
        batches=tuple(Batch(**{k: b[k] for k in columns}) for b in batches),
        trained=tuple(str(s["series_id"]) for s in statuses if s["status"] == "trained"),
        reused=tuple(str(s["series_id"]) for s in statuses if s["status"] == "reused"),
        skipped=tuple(
            Skip(str(s["series_id"]), str(s["reason"])) for s in statuses if s["status"] in ("skipped", "failed")
        ),
        champions={m.series_id: m.model_kind for m in metrics if m.is_champion},
        metrics=metrics,
        forecasts=forecasts,
        database=database,
        data_dir=data_dir,
    )


def run_page_frames(engine: Engine, run_id: str) -> dict[str, pd.DataFrame]:
    """What a run's report page shows, as published: its run row, per-series statuses with the champion's and
    seasonal naive's holdout MASE, the champion forecasts, the last 12 actuals, realised accuracy and batches.

    A series whose forecast did not change is read from the run whose rows stand. Raises LookupError when there
    is no such run.
    """
    params = {"run": run_id}
    run = read_table(engine, "SELECT * FROM pipeline_runs WHERE run_id = :run", params)
    if run.empty:
        raise LookupError(f"no run {run_id!r}")
    series = read_table(
        engine,
        """
        SELECT s.series_id, s.status, s.reason, s.degraded, COALESCE(s.forecast_run_id, s.run_id) AS source_run,
               c.model_kind AS champion, c.mase AS champion_mase, n.mase AS naive_mase
        FROM series_status s
        LEFT JOIN metrics c ON c.run_id = COALESCE(s.forecast_run_id, s.run_id) AND c.series_id = s.series_id
                           AND c.is_champion = TRUE
        LEFT JOIN metrics n ON n.run_id = COALESCE(s.forecast_run_id, s.run_id) AND n.series_id = s.series_id
                           AND n.model_kind = 'seasonal_naive'
        WHERE s.run_id = :run
        ORDER BY s.series_id
        """,
        params,
    )
    forecasts = read_table(
        engine,
        """
        SELECT f.* FROM forecasts f
        JOIN series_status s ON s.series_id = f.series_id AND COALESCE(s.forecast_run_id, s.run_id) = f.run_id
        WHERE s.run_id = :run AND f.is_champion = TRUE
        ORDER BY f.series_id, f.period
        """,
        params,
    )
    recent = read_table(
        engine,
        """
        SELECT series_id, period, value FROM (
            SELECT o.series_id, o.period, o.value,
                   ROW_NUMBER() OVER (PARTITION BY o.series_id ORDER BY o.period DESC) AS rn
            FROM observations o JOIN series_status s ON s.series_id = o.series_id AND s.run_id = :run
        ) ranked WHERE rn <= 12 ORDER BY series_id, period
        """,
        params,
    )
    accuracy = read_table(
        engine,
        """
        SELECT a.* FROM champion_accuracy a JOIN series_status s ON s.series_id = a.series_id AND s.run_id = :run
        WHERE a.window_name = 'last_12_months'
        """,
        params,
    )
    started, finished = run["started_at"].iloc[0], run["finished_at"].iloc[0]
    batches = read_table(
        engine,
        "SELECT * FROM ingest_batches WHERE received_at >= :a AND received_at <= :b ORDER BY received_at",
        {"a": started, "b": finished if finished is not None and not pd.isna(finished) else started},
    )
    return {"run": run, "series": series, "forecasts": forecasts, "recent": recent, "accuracy": accuracy,
            "batches": batches}  # fmt: skip


def runs_overview(engine: Engine, limit: int = 60) -> dict[str, pd.DataFrame]:
    """What the report index shows: the latest runs, each series' status and champion per run, and the realised
    accuracy of each run's published forecasts and of each observed month."""
    runs = read_table(
        engine,
        "SELECT run_id, started_at, finished_at, status, new_observations, series_trained, series_reused, "
        "series_skipped, message FROM pipeline_runs ORDER BY started_at DESC, run_id DESC LIMIT :n",
        {"n": limit},
    )
    series = read_table(
        engine,
        """
        SELECT s.run_id, s.series_id, s.status, s.degraded, COALESCE(s.forecast_run_id, s.run_id) AS source_run,
               c.model_kind AS champion, c.mase AS champion_mase
        FROM series_status s
        JOIN (SELECT run_id FROM pipeline_runs ORDER BY started_at DESC, run_id DESC LIMIT :n) r ON r.run_id = s.run_id
        LEFT JOIN metrics c ON c.run_id = COALESCE(s.forecast_run_id, s.run_id) AND c.series_id = s.series_id
                           AND c.is_champion = TRUE
        """,
        {"n": limit},
    )
    by_run = read_table(
        engine,
        "SELECT run_id, COUNT(*) AS outcomes, AVG(scaled_error) AS realised_mase, "
        "CAST(AVG(CASE WHEN covered THEN 1.0 WHEN covered IS NULL THEN NULL ELSE 0.0 END) AS FLOAT) AS coverage "
        "FROM forecast_outcomes WHERE is_champion = TRUE GROUP BY run_id",
    )
    by_month = read_table(
        engine,
        "SELECT period, COUNT(*) AS outcomes, AVG(scaled_error) AS realised_mase, "
        "CAST(AVG(CASE WHEN covered THEN 1.0 WHEN covered IS NULL THEN NULL ELSE 0.0 END) AS FLOAT) AS coverage "
        "FROM forecast_outcomes WHERE is_champion = TRUE GROUP BY period ORDER BY period",
    )
    return {"runs": runs, "series": series, "by_run": by_run, "by_month": by_month}
