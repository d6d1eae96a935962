"""Rolling-origin backtests: the production procedure replayed at earlier origins, with no peeking.

At each origin (3 windows of 12 months: every series cut 36, 24, then 12 months before its end) the series are
cut there and run through the same stages a monthly run uses (`pipeline.model_stages`): every candidate is
fitted on the data up to the origin, the global networks on every series' data up to it, the champion is
chosen on a holdout carved from that data only, the intervals are calibrated on it, and the next `horizon`
months are forecast and compared with what happened. No window is dropped for length: a series is forecast
at an origin by whatever the production rules would have published from the history it had (naive from a
single month on).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqcast import lake, workers
from seqcast._files import atomic_write
from seqcast.config import RunConfig
from seqcast.evaluate import score
from seqcast.records import Forecast

log = logging.getLogger(__name__)

CHAMPION = "champion"


def run_backtest(
    frame: pd.DataFrame,
    config: RunConfig,
    horizon: int = 12,
    windows: int = 3,
    progress: Callable[[int], None] | None = None,
) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Backtest every series of a long frame (series_id, period, value) with the run settings `config`.

    Returns one row per series, candidate kind (and `champion`), origin and step: yhat, both intervals and the
    actual `y`; and the series left out (missing months inside them), with reasons.
    """
    from seqcast import pipeline

    frame = frame.sort_values(["series_id", "period"]).reset_index(drop=True)
    skipped: list[dict[str, str]] = []
    series: dict[str, pd.DataFrame] = {}
    for series_id, group in frame.groupby("series_id", sort=True):
        months = group["period"].to_numpy().astype("datetime64[M]").astype(np.int64)
        if len(group) and months[-1] - months[0] + 1 != len(group):
            skipped.append({"series_id": str(series_id), "reason": "missing months"})
            continue
        series[str(series_id)] = group
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="seqcast-backtest-") as scratch, workers.training_processes(config.workers):
        for w in range(windows, 0, -1):
            cut = {sid: g.iloc[: len(g) - w * horizon] for sid, g in series.items() if len(g) - w * horizon >= 1}
            if not cut:
                continue
            folder = Path(scratch) / f"origin-{w}"
            at_origin = config.model_copy(update={"data_dir": str(folder), "horizon": horizon})
            refs = lake.snapshot(pd.concat(cut.values()).assign(is_filled=False), folder / "lake")
            executor = pipeline.PlainExecutor(workers.THREADS_PER_PROCESS * config.workers)
            try:
                _, _, forecasts = pipeline.model_stages(refs, at_origin, executor)
            finally:
                executor.close()
            for forecast in forecasts:
                if not isinstance(forecast, Forecast):
                    log.error("backtest: series %r failed at window %d: %s", forecast.series_id, w, forecast.reason)
                    continue
                g = series[forecast.series_id]
                origin = len(g) - w * horizon
                actual = g["value"].to_numpy(dtype=np.float64)[origin : origin + horizon]
                for r in forecast.rows:
                    row = {
                        "series_id": r.series_id,
                        "model_kind": r.model_kind,
                        "origin": r.origin,
                        "period": r.period,
                        "step": r.step,
                        "yhat": r.yhat,
                        "yhat_lower": r.yhat_lower,
                        "yhat_upper": r.yhat_upper,
                        "yhat_lower_outer": r.yhat_lower_outer,
                        "yhat_upper_outer": r.yhat_upper_outer,
                        "y": float(actual[r.step - 1]),
                        "chosen": forecast.champion if r.is_champion else r.model_kind,
                    }
                    rows.append(row)
                    if r.is_champion:
                        rows.append({**row, "model_kind": CHAMPION})
            if progress:
                progress(len(cut))
    return pd.DataFrame(rows), skipped


def window_metrics(forecasts: pd.DataFrame, history: pd.DataFrame, levels: tuple[float, float] = (0.8, 0.95)
                   ) -> pd.DataFrame:  # fmt: skip
    """Metrics per series, model kind and origin (MASE scaled by that window's training data), and the
    share of actuals inside each interval."""
    out = []
    values = {str(sid): g.sort_values("period") for sid, g in history.groupby("series_id")}
    for (sid, kind, origin), g in forecasts.groupby(["series_id", "model_kind", "origin"], sort=True):
        hist = values[str(sid)]
        train = hist["value"].to_numpy()[(hist["period"] <= pd.Timestamp(str(origin))).to_numpy()]
        m = dataclasses.asdict(score(g["y"].to_numpy(), g["yhat"].to_numpy(), train))
        inside = (g["y"] >= g["yhat_lower"]) & (g["y"] <= g["yhat_upper"])
        row = {"series_id": sid, "model_kind": kind, "origin": origin, **m, "coverage": float(inside.mean())}
        if "yhat_lower_outer" in g:
            outer = (g["y"] >= g["yhat_lower_outer"]) & (g["y"] <= g["yhat_upper_outer"])
            row["coverage_outer"] = float(outer.mean())
        row["chosen"] = g["chosen"].iloc[0]
        out.append(row)
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
    if "coverage_outer" in metrics:
        table.insert(5, "coverage_outer", grouped["coverage_outer"].mean())
    return table.sort_values("mean_mase")


#: CSV columns of `seqcast backtest --output`.
CSV_COLUMNS = [
    "series_id", "model_kind", "origin", "period", "step", "yhat", "y", "yhat_lower", "yhat_upper",
    "yhat_lower_outer", "yhat_upper_outer",
]  # fmt: skip
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """Text a spreadsheet shows as text: a leading `=`, `+`, `-`, `@`, tab or carriage return would make it a
    formula (`=cmd|...`), so such a cell is prefixed with an apostrophe, as spreadsheets themselves do."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def write_csv(forecasts: pd.DataFrame, path: Path) -> Path:
    """Write a backtest's forecasts (one row per series, model, origin and step), text cells made safe to open
    in a spreadsheet."""
    out = forecasts[[c for c in CSV_COLUMNS if c in forecasts]].copy()
    for column in ("series_id", "model_kind"):
        out[column] = out[column].astype(str).map(spreadsheet_safe)
    return atomic_write(Path(path), lambda tmp: out.to_csv(tmp, index=False))
