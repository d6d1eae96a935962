"""Forecast accuracy of what `seqcast run` publishes, against statsforecast's classical models on the same windows.

    python benchmarks/accuracy.py [--sets m1 dev air] [--model lstm] [--preset default] [--workers 2] [--horizon H]

Sets (benchmarks/data/ and the bundled series), each scored separately:
  m1   the 617 monthly series of the M1 competition, one origin (each series' training part), h = 18;
  dev  17 real monthly series, origins 36, 24 and 12 months before each end, h = 12;
  air  the bundled air-passengers series, the same three origins.

seqcast is run as `seqcast backtest` runs it (`seqcast.backtest.run_backtest`: the monthly procedure replayed at
each origin, with the product's default settings unless options say otherwise). statsforecast's SeasonalNaive,
AutoETS and AutoTheta forecast the same windows. Every method is scored by the same code
(`seqcast.backtest.window_metrics`): MASE is scaled by the in-sample lag-12 seasonal-naive error of the window's
training data. Per set: mean and median MASE and sMAPE, the series where the published forecast beats AutoETS and
beats seasonal naive (on their mean MASE over the windows), a bootstrap 95% interval of the mean MASE difference to
AutoETS (resampling series), interval coverage per level, and seconds per series.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqcast import backtest as bt
from seqcast.config import RunConfig
from seqcast.ingest import bundled_series_path, parse_file

HERE = Path(__file__).parent
SETS = {"m1": ("m1_monthly.csv", 18, 1), "dev": ("dev_monthly.csv", 12, 3), "air": (None, 12, 3)}


def load(name: str) -> tuple[pd.DataFrame, int, int]:
    file, horizon, windows = SETS[name]
    path = bundled_series_path() if file is None else HERE / "data" / file
    # (Each M1 series is its training part followed by its 18-month test part: one origin, at the split.)
    return parse_file(path).rows, horizon, windows


def statsforecast_rows(
    frame: pd.DataFrame, horizon: int, windows: int, models: dict[str, Any] | None = None
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Forecast rows of statsforecast models (name: constructor; by default seasonal naive, AutoETS and AutoTheta)
    on the backtest's windows, and each model's seconds."""
    from statsforecast.models import AutoETS, AutoTheta, SeasonalNaive

    models = models or {
        "statsforecast SeasonalNaive": lambda: SeasonalNaive(season_length=12),
        "statsforecast AutoETS": lambda: AutoETS(season_length=12),
        "statsforecast AutoTheta": lambda: AutoTheta(season_length=12),
    }
    rows, seconds = [], dict.fromkeys(models, 0.0)
    for series_id, group in frame.groupby("series_id", sort=True):
        y = group["value"].to_numpy(dtype=float)
        periods = [str(p.date()) for p in group["period"]]
        for w in range(windows, 0, -1):
            origin = len(y) - w * horizon
            if origin < 1:
                continue
            for name, make in models.items():
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        out = make().forecast(y=y[:origin], h=horizon, level=[80, 95])
                    except Exception:  # too short for the model: its naive fallback
                        out = {k: np.full(horizon, y[origin - 1]) for k in ("mean", "lo-80", "hi-80", "lo-95", "hi-95")}
                seconds[name] += time.perf_counter() - start
                for step in range(1, horizon + 1):
                    rows.append(
                        {
                            "series_id": series_id,
                            "model_kind": name,
                            "origin": periods[origin - 1],
                            "period": periods[origin + step - 1],
                            "step": step,
                            "yhat": float(out["mean"][step - 1]),
                            "yhat_lower": float(out["lo-80"][step - 1]),
                            "yhat_upper": float(out["hi-80"][step - 1]),
                            "yhat_lower_outer": float(out["lo-95"][step - 1]),
                            "yhat_upper_outer": float(out["hi-95"][step - 1]),
                            "y": float(y[origin + step - 1]),
                            "chosen": name,
                        }
                    )
    return pd.DataFrame(rows), seconds


def bootstrap_difference(a: np.ndarray, b: np.ndarray, draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of mean(a - b), resampling series."""
    rng = np.random.default_rng(seed)
    d = a - b
    means = [float(np.mean(d[rng.integers(0, len(d), len(d))])) for _ in range(draws)]
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def report(name: str, metrics: pd.DataFrame, seconds: dict[str, float], n_series: int, published: str) -> None:
    per_series = metrics.groupby(["model_kind", "series_id"])[["mase", "smape"]].mean()
    ets = per_series.loc["statsforecast AutoETS"]
    naive = per_series.loc["statsforecast SeasonalNaive"]
    print(f"\n{name}: {n_series} series, {metrics['origin'].nunique()} origin(s)")
    print(
        f"{'method':34} {'MASE mean':>9} {'median':>7} {'sMAPE':>6} {'/ETS':>6} {'beats ETS':>9} {'beats SN':>8} "
        f"{'cover 80':>8} {'cover 95':>8} {'s/series':>8}"
    )
    order = per_series.groupby(level=0)["mase"].mean().sort_values().index
    for kind in order:
        s = per_series.loc[kind]
        common = s.index.intersection(ets.index)
        beats_ets = int((s.loc[common, "mase"] < ets.loc[common, "mase"]).sum())
        beats_naive = int((s.loc[common, "mase"] < naive.loc[common, "mase"]).sum())
        rows = metrics[metrics["model_kind"] == kind]
        cover = rows["coverage"].mean() * 100
        cover_outer = rows["coverage_outer"].mean() * 100 if "coverage_outer" in rows else float("nan")
        ratio = s["mase"].mean() / ets["mase"].mean()
        print(
            f"{kind:34} {s['mase'].mean():>9.3f} {s['mase'].median():>7.3f} {s['smape'].mean():>6.2f} "
            f"{ratio:>6.3f} {beats_ets:>4}/{len(common):<4} {beats_naive:>4}/{len(common):<3} {cover:>8.1f} "
            f"{cover_outer:>8.1f} {seconds.get(kind, float('nan')) / n_series:>8.3f}"
        )
    champion = per_series.loc[published]
    common = champion.index.intersection(ets.index)
    lo, hi = bootstrap_difference(champion.loc[common, "mase"].to_numpy(), ets.loc[common, "mase"].to_numpy())
    print(
        f"published (champion) minus AutoETS, mean MASE: {champion['mase'].mean() - ets['mase'].mean():+.3f} "
        f"(95% bootstrap interval {lo:+.3f} .. {hi:+.3f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--model", nargs="+", default=None, help="network kinds [the product's default]")
    parser.add_argument("--preset", default=None, help="seqcast preset [the product's default]")
    parser.add_argument("--statistical", nargs="*", default=None, help="statistical kinds [the product's default]")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument(
        "--horizon",
        type=int,
        default=None,
        help="forecast this many months at each origin instead of the set's own (each origin moves back with it: "
        "M1 at --horizon 24 is cut 24 months before its end, 6 months into its training part)",
    )
    args = parser.parse_args()
    overrides = {
        k: v
        for k, v in {
            "models": args.model,
            "preset": args.preset,
            "statistical": args.statistical,
            "workers": args.workers,
        }.items()
        if v is not None
    }
    config = RunConfig(**overrides)
    print(
        f"seqcast settings: preset {config.preset}, networks {config.models}, statistical {config.statistical}, "
        f"combination {config.combine}, champion margin {config.champion_margin}, levels {config.interval_levels}"
    )
    for name in args.sets:
        frame, horizon, windows = load(name)
        horizon = args.horizon or horizon
        start = time.perf_counter()
        forecasts, skipped = bt.run_backtest(frame, config, horizon, windows)
        seqcast_seconds = time.perf_counter() - start
        assert not skipped, skipped
        forecasts = forecasts.copy()
        forecasts["model_kind"] = "seqcast " + forecasts["model_kind"]
        stats, seconds = statsforecast_rows(frame, horizon, windows)
        metrics = bt.window_metrics(pd.concat([forecasts, stats], ignore_index=True), frame, config.interval_levels)
        seconds["seqcast champion"] = seqcast_seconds
        report(f"{name} (h = {horizon})", metrics, seconds, frame["series_id"].nunique(), "seqcast champion")
    print(
        "\nseqcast's s/series is the wall time of the whole backtest (every candidate, training processes) per series;"
    )
    print("statsforecast's is each model's own fitting and forecasting, one process.")


if __name__ == "__main__":
    main()
