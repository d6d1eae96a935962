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


def latest_published(engine: Engine) -> dict[str, tuple[str, str]]:
    """Per series: the run whose rows are its latest published ones, and their digest (`publish.digest`)."""
    rows = read_table(
        engine,
        """
        SELECT series_id, forecast_run_id, forecast_sha256 FROM (
            SELECT s.series_id, s.forecast_run_id, s.forecast_sha256,
                   ROW_NUMBER() OVER (PARTITION BY s.series_id ORDER BY r.started_at DESC, r.run_id DESC) AS rn
            FROM series_status s JOIN pipeline_runs r ON r.run_id = s.run_id
            WHERE r.status = 'completed' AND s.forecast_sha256 IS NOT NULL
        ) ranked WHERE rn = 1
        """,
    )
    return {str(r[0]): (str(r[1]), str(r[2])) for r in rows.itertuples(index=False)}


def read_query(
    engine: Engine, query: sa.Select[Any] | sa.TextClause, params: dict[str, Any] | None = None
) -> pd.DataFrame:
    """Run a read-only query (an expression, or fixed SQL text with bound parameters) into a frame."""
    with engine.connect() as conn:
        result = conn.execute(query, params or {})
        return pd.DataFrame(result.all(), columns=list(result.keys()))


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
