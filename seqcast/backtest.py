"""Rolling-origin backtests: the production procedure replayed at earlier origins, with no peeking.

At each origin (with 3 windows and h = 12: n-36, n-24, n-12) every model is fit on the data up to the
origin (scalers too) and forecasts the next `horizon` months. The champion at that origin is chosen the
way a run chooses it, on a holdout carved from the training data only (its last `horizon` months), and
its interval comes from that holdout's errors, so the backtest also measures interval coverage.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqcast import models, processes
from seqcast._files import atomic_write
from seqcast.config import ModelConfig
from seqcast.evaluate import score, selection_score
from seqcast.forecast import candidate_configs, conformal_interval, min_history

log = logging.getLogger(__name__)

CHAMPION = "champion"


def _forecast(kind: str, train: np.ndarray, horizon: int, configs: dict[str, ModelConfig]) -> np.ndarray:
    config = configs[kind]
    forecast: np.ndarray = models.kind(kind).forecaster()(config).fit(train, curve=False).predict(horizon)
    return forecast


def backtest_series(
    series_id: str,
    periods: list[str],
    values: np.ndarray,
    configs: list[ModelConfig],
    horizon: int,
    windows: int,
    level: float,
) -> list[dict[str, Any]]:
    """One row per model kind (and `champion`), origin and step: yhat, interval, actual y."""
    y = np.asarray(values, dtype=np.float64)
    by_kind: dict[str, ModelConfig] = {c.kind: c for c in candidate_configs(configs)}
    kinds = list(by_kind)
    rows: list[dict[str, Any]] = []
    for w in range(windows, 0, -1):
        origin = len(y) - w * horizon
        train, actual = y[:origin], y[origin : origin + horizon]
        # Selection and intervals from a holdout inside the training data, as a run would do.
        inner_train, inner_actual = train[:-horizon], train[-horizon:]
        inner = {kind: _forecast(kind, inner_train, horizon, by_kind) for kind in kinds}
        inner_scores = {kind: selection_score(score(inner_actual, inner[kind], inner_train)) for kind in kinds}
        champion = min(kinds, key=lambda k: (inner_scores[k], k))
        outer = {kind: _forecast(kind, train, horizon, by_kind) for kind in kinds}
        outer[CHAMPION] = outer[champion]
        inner[CHAMPION] = inner[champion]
        for kind, yhat in outer.items():
            # As in a run: the champion's interval pools every candidate's holdout errors.
            pooled = [inner[champion], *(inner[k] for k in kinds if k != champion)] if kind == CHAMPION else inner[kind]
            lower, upper = conformal_interval(yhat, inner_actual, pooled, level)
            for step in range(1, horizon + 1):
                rows.append(
                    {
                        "series_id": series_id,
                        "model_kind": kind,
                        "origin": periods[origin - 1],
                        "period": periods[origin + step - 1],
                        "step": step,
                        "yhat": float(yhat[step - 1]),
                        "yhat_lower": float(lower[step - 1]),
                        "yhat_upper": float(upper[step - 1]),
                        "y": float(actual[step - 1]),
                        "chosen": champion if kind == CHAMPION else kind,
                    }
                )
    return rows


def _job(args: tuple[Any, ...]) -> list[dict[str, Any]]:
    return backtest_series(*args)


def run_backtest(
    frame: pd.DataFrame,
    configs: list[ModelConfig],
    horizon: int = 12,
    windows: int = 3,
    level: float = 0.8,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Backtest every series of a long frame (series_id, period, value).

    Returns the per-step forecast frame and the series skipped (too short or with gaps) with reasons.
    Series run in parallel processes when there are several (each network trains on one thread).
    """
    jobs, skipped = [], []
    needed = windows * horizon + min_history(candidate_configs(configs), horizon)
    for series_id, group in frame.sort_values(["series_id", "period"]).groupby("series_id", sort=True):
        months = group["period"].to_numpy().astype("datetime64[M]").astype(np.int64)
        if len(group) and months[-1] - months[0] + 1 != len(group):
            skipped.append({"series_id": str(series_id), "reason": "missing months"})
            continue
        if len(group) < needed:
            skipped.append({"series_id": str(series_id), "reason": f"too short: {len(group)} months, {needed} needed"})
            continue
        periods = [str(p.date()) for p in group["period"]]
        jobs.append((str(series_id), periods, group["value"].to_numpy(), configs, horizon, windows, level))
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    rows: list[dict[str, Any]] = []
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            rows += _job(job)
            if progress:
                progress(1)
    else:
        # Not forked from this process (a forked child of a process that already ran torch can deadlock): from the
        # fork server, which only loaded torch, or spawned.
        with ProcessPoolExecutor(workers, mp_context=processes.context()) as pool:
            for part in pool.map(_job, jobs):
                rows += part
                if progress:
                    progress(1)
    return pd.DataFrame(rows), skipped


def window_metrics(forecasts: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """Metrics per series, model kind and origin; MASE scaled by that window's training data."""
    out = []
    values = {str(sid): g.sort_values("period") for sid, g in history.groupby("series_id")}
    for (sid, kind, origin), g in forecasts.groupby(["series_id", "model_kind", "origin"], sort=True):
        hist = values[str(sid)]
        train = hist["value"].to_numpy()[(hist["period"] <= pd.Timestamp(str(origin))).to_numpy()]
        m = dataclasses.asdict(score(g["y"].to_numpy(), g["yhat"].to_numpy(), train))
        inside = (g["y"] >= g["yhat_lower"]) & (g["y"] <= g["yhat_upper"])
        out.append(
            {
                "series_id": sid,
                "model_kind": kind,
                "origin": origin,
                **m,
                "coverage": float(inside.mean()),
                "chosen": g["chosen"].iloc[0],
            }
        )
    return pd.DataFrame(out)


def summarise(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and median MASE, mean sMAPE, MAPE and interval coverage per model kind."""
    grouped = metrics.groupby("model_kind")
    table = pd.DataFrame(
        {
            "mean_mase": grouped["mase"].mean(),
            "median_mase": grouped["mase"].median(),
            "mean_smape": grouped["smape"].mean(),
            "mean_mape": grouped["mape"].mean(),
            "coverage": grouped["coverage"].mean(),
            "windows": grouped.size(),
        }
    )
    return table.sort_values("mean_mase")


#: CSV columns of `seqcast backtest --output`.
CSV_COLUMNS = ["series_id", "model_kind", "origin", "period", "step", "yhat", "y", "yhat_lower", "yhat_upper"]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """Text a spreadsheet shows as text: a leading `=`, `+`, `-`, `@`, tab or carriage return would make it a
    formula (`=cmd|...`), so such a cell is prefixed with an apostrophe, as spreadsheets themselves do."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def write_csv(forecasts: pd.DataFrame, path: Path) -> Path:
    """Write a backtest's forecasts (one row per series, model, origin and step), text cells made safe to open
    in a spreadsheet."""
    out = forecasts[CSV_COLUMNS].copy()
    for column in ("series_id", "model_kind"):
        out[column] = out[column].astype(str).map(spreadsheet_safe)
    return atomic_write(Path(path), lambda tmp: out.to_csv(tmp, index=False))
