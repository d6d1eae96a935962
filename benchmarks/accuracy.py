"""Forecast accuracy: seqcast's backtest against statsforecast's classical models, same windows, same metrics.

    pip install -e '.[bench]'          # statsforecast, for the baselines
    python benchmarks/accuracy.py [--windows 3] [--horizon 12] [--models lstm] [--presets default tutorial]
                                  [--no-baselines]

Data: the bundled air-passengers series and benchmarks/data/dev_monthly.csv (17 real monthly series).
For every series, origins n-36, n-24, n-12 (3 windows of 12): each method is fit on the data up to the origin
and forecasts 12 months. Metrics come from seqcast.backtest.window_metrics for every method: MASE is scaled by
the in-sample lag-12 seasonal-naive error of that window's training data. Coverage is that of 80% intervals.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from seqcast import backtest as bt
from seqcast.config import model_config_for
from seqcast.ingest import bundled_series_path, parse_file

HERE = Path(__file__).parent


def load_data() -> pd.DataFrame:
    dev = parse_file(HERE / "data" / "dev_monthly.csv").rows
    air = parse_file(bundled_series_path()).rows
    return pd.concat([air, dev], ignore_index=True)


def run_seqcast(
    frame: pd.DataFrame, preset: str, models: list[str], horizon: int, windows: int
) -> tuple[pd.DataFrame, float]:
    configs = [model_config_for(kind, preset, horizon) for kind in models]
    start = time.perf_counter()
    forecasts, skipped = bt.run_backtest(frame, configs, horizon, windows, level=0.8)
    seconds = time.perf_counter() - start
    assert not skipped, skipped
    forecasts = forecasts.copy()
    label = {"champion": f"{preset}: champion"} | {k: f"{preset}: {k}" for k in models}
    forecasts = forecasts[forecasts["model_kind"] != "seasonal_naive"]
    forecasts["model_kind"] = forecasts["model_kind"].map(label)
    return forecasts, seconds


def run_statsforecast(frame: pd.DataFrame, horizon: int, windows: int) -> tuple[pd.DataFrame, dict[str, float]]:
    from statsforecast import StatsForecast
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta, SeasonalNaive

    models = {
        "SeasonalNaive": SeasonalNaive(season_length=12),
        "AutoETS": AutoETS(season_length=12),
        "AutoARIMA": AutoARIMA(season_length=12),
        "AutoTheta": AutoTheta(season_length=12),
    }
    rows, seconds = [], dict.fromkeys(models, 0.0)
    for series_id, group in frame.groupby("series_id", sort=True):
        group = group.sort_values("period")
        y = group["value"].to_numpy(dtype=float)
        periods = [str(p.date()) for p in group["period"]]
        for w in range(windows, 0, -1):
            origin = len(y) - w * horizon
            train = pd.DataFrame({"unique_id": series_id, "ds": group["period"].iloc[:origin], "y": y[:origin]})
            for name, model in models.items():
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    sf = StatsForecast(models=[model], freq="MS", n_jobs=1)
                    out = sf.forecast(df=train, h=horizon, level=[80])
                seconds[name] += time.perf_counter() - start
                alias = str(model)
                for step in range(1, horizon + 1):
                    rows.append(
                        {
                            "series_id": series_id,
                            "model_kind": f"statsforecast: {name}",
                            "origin": periods[origin - 1],
                            "period": periods[origin + step - 1],
                            "step": step,
                            "yhat": float(out[alias].iloc[step - 1]),
                            "yhat_lower": float(out[f"{alias}-lo-80"].iloc[step - 1]),
                            "yhat_upper": float(out[f"{alias}-hi-80"].iloc[step - 1]),
                            "y": float(y[origin + step - 1]),
                            "chosen": name,
                        }
                    )
    return pd.DataFrame(rows), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--horizon", type=int, default=12)
    parser.add_argument("--models", nargs="+", default=["lstm"])
    parser.add_argument("--presets", nargs="+", default=["default", "tutorial"], help="seqcast presets to backtest")
    parser.add_argument("--no-tutorial", action="store_true", help="the same as leaving tutorial out of --presets")
    parser.add_argument("--no-baselines", action="store_true", help="skip statsforecast")
    args = parser.parse_args()

    frame = load_data()
    n_series = frame["series_id"].nunique()
    parts, seconds = [], {}
    for preset in [p for p in args.presets if not (args.no_tutorial and p == "tutorial")]:
        forecasts, secs = run_seqcast(frame, preset, args.models, args.horizon, args.windows)
        parts.append(forecasts)
        for kind in forecasts["model_kind"].unique():
            seconds[kind] = secs
    if not args.no_baselines:
        try:
            stats, stat_secs = run_statsforecast(frame, args.horizon, args.windows)
        except ImportError:
            print("statsforecast is not installed (pip install -e '.[bench]'): baselines skipped")
        else:
            parts.append(stats)
            seconds |= {f"statsforecast: {k}": v for k, v in stat_secs.items()}
    forecasts = pd.concat(parts, ignore_index=True)
    metrics = bt.window_metrics(forecasts, frame)

    air = metrics[(metrics["series_id"] == "air_passengers") & (metrics["origin"] == "1959-12-01")]
    air_mape = dict(zip(air["model_kind"], air["mape"], strict=True))
    dev = metrics[metrics["series_id"] != "air_passengers"]
    table = bt.summarise(dev)
    wall = "seqcast timings are wall time of the whole backtest (parallel processes) per series"
    print(
        f"Rolling-origin backtest: {args.windows} origins x h={args.horizon}; development set = "
        f"{dev['series_id'].nunique()} series ({n_series} with air passengers)"
    )
    print(
        f"{'method':34} {'MASE mean':>9} {'median':>7} {'sMAPE':>6} {'MAPE':>6} {'cover80':>7} "
        f"{'air 1960 MAPE':>13} {'s/series':>9}"
    )
    for kind, row in table.iterrows():
        per_series = seconds.get(kind, np.nan) / n_series
        print(
            f"{kind:34} {row['mean_mase']:>9.3f} {row['median_mase']:>7.3f} {row['mean_smape']:>6.2f} "
            f"{row['mean_mape']:>6.2f} {row['coverage']:>7.3f} {air_mape.get(kind, np.nan):>12.2f}% "
            f"{per_series:>9.2f}"
        )
    print(f"({wall}; statsforecast per method, one process)")


if __name__ == "__main__":
    main()
