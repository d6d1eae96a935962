"""The forecast ledger: how published forecasts did once their months were observed, and which series degraded.

    ledger.record_outcomes(engine)          # after ingest: every newly observed (or revised) forecast month
    ledger.degraded_series(engine, ...)     # series whose published forecasts did clearly worse than promised

Outcomes are scored with the same metric code as the holdout (`seqcast.evaluate`): the MASE scale of an outcome
is the series' in-sample mean absolute lag-12 error up to the forecast's origin, so a realised MASE reads like
the holdout MASE in `metrics`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from seqcast import evaluate, store
from seqcast.store import schema

log = logging.getLogger(__name__)

#: A series' realised coverage counts as well under nominal when so few of its actuals fell inside the interval
#: that a calibrated interval would give so few (or fewer) with at most this probability (outcomes taken as
#: independent).
COVERAGE_ALPHA = 0.01
#: Fewest realised champion outcomes before a series can be called degraded.
MIN_OUTCOMES = 3

_KEY = ("run_id", "series_id", "model_kind", "period")


def _pending(engine: Engine, series_ids: list[str] | None) -> pd.DataFrame:
    """Published forecast rows whose month is observed and whose outcome is missing or has another actual."""
    f, r, o, x = schema.forecasts, schema.pipeline_runs, schema.observations, schema.forecast_outcomes
    query = (
        sa.select(
            *(f.c[c.name] for c in f.columns),
            o.c.value.label("actual"),
            r.c.finished_at.label("published_at"),
            x.c.recorded_at.label("was_recorded_at"),
        )
        .join(r, sa.and_(r.c.run_id == f.c.run_id, r.c.status == "completed"))
        .join(o, sa.and_(o.c.series_id == f.c.series_id, o.c.period == f.c.period))
        .outerjoin(x, sa.and_(*(x.c[k] == f.c[k] for k in _KEY)))
        .where(sa.or_(x.c.run_id.is_(None), x.c.actual != o.c.value))
    )
    frames = []
    ids: list[list[str] | None] = [None] if series_ids is None else [
        series_ids[i : i + 500] for i in range(0, len(series_ids), 500)
    ]  # fmt: skip
    for part in ids:
        q = query if part is None else query.where(f.c.series_id.in_(part))
        frames.append(store.read_query(engine, q))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _scales(engine: Engine, pending: pd.DataFrame) -> dict[tuple[str, Any], float]:
    """The MASE scale of each (series, origin) among the pending rows: from the series' values up to the origin."""
    out: dict[tuple[str, Any], float] = {}
    origins = pending.groupby("series_id")["origin"].unique()
    history = store.load_observations(engine, [str(s) for s in origins.index])
    for sid, group in history.groupby("series_id", sort=False):
        periods = group["period"].dt.date.to_numpy()
        values = group["value"].to_numpy(dtype=float)
        for origin in origins[sid]:
            out[(str(sid), origin)] = evaluate.mase_scale(values[periods <= store.as_date(origin)])
    return out


def _inside(actual: float, lower: Any, upper: Any) -> bool | None:
    if lower is None or upper is None or not (math.isfinite(lower) and math.isfinite(upper)):
        return None
    return bool(lower <= actual <= upper)


def outcome_rows(pending: pd.DataFrame, scales: dict[tuple[str, Any], float]) -> list[dict[str, Any]]:
    """The ledger rows of pending forecast rows (a pure mapping: scores as in `seqcast.evaluate`)."""
    now = store.utcnow()
    rows = []
    for p in pending.to_dict("records"):
        actual, yhat = float(p["actual"]), float(p["yhat"])
        error = actual - yhat
        scale = scales.get((str(p["series_id"]), p["origin"]), float("nan"))
        denominator = abs(actual) + abs(yhat)
        first_time = p["was_recorded_at"] is None or pd.isna(p["was_recorded_at"])
        rows.append(
            {
                **{c.name: p[c.name] for c in schema.forecasts.columns},
                "actual": actual,
                "error": error,
                "scale": scale if math.isfinite(scale) else None,
                "scaled_error": abs(error) / scale if math.isfinite(scale) else None,
                "smape_term": 200 * abs(error) / denominator if denominator > 0 else 0.0,
                "covered": _inside(actual, p["yhat_lower"], p["yhat_upper"]),
                "covered_outer": _inside(actual, p["yhat_lower_outer"], p["yhat_upper_outer"]),
                "published_at": p["published_at"],
                "recorded_at": now if first_time else p["was_recorded_at"],
                "revised_at": None if first_time else now,
            }
        )
    return rows


def record_outcomes(engine: Engine, series_ids: Iterable[str] | None = None) -> int:
    """Record the outcome of every published forecast whose month is now observed; a revised actual updates its
    outcome (the old value stays in observation_revisions). Returns how many outcomes were recorded or updated."""
    pending = _pending(engine, None if series_ids is None else sorted({str(s) for s in series_ids}))
    if pending.empty:
        return 0
    pending = pending.astype(object).where(pending.notna(), None)
    rows = outcome_rows(pending, _scales(engine, pending))
    store.replace_outcomes(engine, rows)
    log.info("ledger: %d forecast outcome(s) recorded", len(rows))
    return len(rows)


@dataclass(frozen=True)
class Degradation:
    """Why a series counts as degraded."""

    series_id: str
    outcomes: int
    realised_mase: float
    holdout_mase: float
    coverage: float
    interval_level: float
    reason: str


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


def judge(
    outcomes: pd.DataFrame, factor: float, months: int, min_outcomes: int = MIN_OUTCOMES
) -> dict[str, Degradation]:
    """Which series degraded, from their champion outcomes (a pure function of ledger rows with the holdout MASE
    the publishing run promised, column `holdout_mase`).

    Over a series' `months` latest realised months: degraded when its realised MASE (every forecast of those
    months) is above `factor` times the holdout MASE, or when so few of those months' actuals fell inside either
    interval of their freshest forecast (`covered` at `interval_level`, and `covered_outer` where given) that a
    calibrated interval would give so few with probability under `COVERAGE_ALPHA`. Rows come in publishing order.
    """
    out: dict[str, Degradation] = {}
    for sid, group in outcomes.groupby("series_id", sort=True):
        latest = np.sort(group["period"].unique())[-months:]
        recent = group[group["period"].isin(latest)]
        if len(recent) < min_outcomes:
            continue
        realised = float(recent["scaled_error"].astype(float).mean())
        promised = float(recent["holdout_mase"].astype(float).mean())
        # Coverage on one outcome per month, the freshest forecast of it: forecasts of one month by several runs
        # miss together, and counting each would call a calibrated interval degraded.
        freshest = recent.drop_duplicates("period", keep="last")
        reasons = []
        if math.isfinite(realised) and math.isfinite(promised) and realised > factor * promised:
            reasons.append(f"realised MASE {realised:.2f} over {len(recent)} forecasts against holdout {promised:.2f}")
        shares = []
        for column, level_column in (("covered", "interval_level"), ("covered_outer", "interval_level_outer")):
            if column not in freshest:
                continue
            covered = freshest[column].dropna().astype(bool)
            level = float(pd.to_numeric(freshest[level_column], errors="coerce").max())
            shares.append((float(covered.mean()) if len(covered) else float("nan"), level))
            inside = int(covered.sum())
            if len(covered) >= min_outcomes and math.isfinite(level) and (
                    _binomial_cdf(inside, len(covered), level) < COVERAGE_ALPHA):  # fmt: skip
                reasons.append(f"{inside} of {len(covered)} actuals inside the {level:.0%} interval")
        coverage, level = shares[0] if shares else (float("nan"), float("nan"))
        if reasons:
            out[str(sid)] = Degradation(
                str(sid), len(recent), realised, promised, coverage, level, "degraded: " + "; ".join(reasons)
            )
    return out


def degraded_series(engine: Engine, factor: float, months: int) -> dict[str, Degradation]:
    """The degraded series, judged on the ledger's champion outcomes (`judge`)."""
    x, m = schema.forecast_outcomes, schema.metrics
    query = (
        sa.select(
            x.c.series_id,
            x.c.period,
            x.c.scaled_error,
            x.c.covered,
            x.c.interval_level,
            x.c.covered_outer,
            x.c.interval_level_outer,
            m.c.mase.label("holdout_mase"),
        )
        .join(m, sa.and_(m.c.run_id == x.c.run_id, m.c.series_id == x.c.series_id, m.c.model_kind == x.c.model_kind))
        .where(x.c.is_champion.is_(True))
        .order_by(x.c.series_id, x.c.published_at, x.c.run_id)
    )
    outcomes = store.read_query(engine, query)
    if outcomes.empty:
        return {}
    return judge(outcomes, factor, months)


__all__ = ["Degradation", "degraded_series", "judge", "outcome_rows", "record_outcomes"]
