"""The global network alone on M1 (the product's default network, one origin, h = 18), over several seeds, beside
statsforecast's AutoETS on the same windows: for judging a change to the network by more than one seed.

    python benchmarks/network.py [--seeds 0 1 2 3 4] [--seasonality-z 1.0] [--steps 1500]

Each seed trains the default network on the training parts of all 617 series and forecasts their test parts;
MASE is `seqcast.evaluate.score`'s (scaled by the training part's seasonal-naive error). Prints, per seed, the mean
MASE, its ratio to AutoETS's and the series it beats AutoETS on, then the mean ratio over the seeds.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from seqcast.config import model_config_for
from seqcast.evaluate import score
from seqcast.models import global_network

HERE = Path(__file__).parent
HORIZON = 18


def m1() -> list[tuple[np.ndarray, np.ndarray]]:
    """(training part, test part) of every M1 series."""
    frame = pd.read_csv(HERE / "data" / "m1_monthly.csv")
    series = [g["value"].to_numpy(dtype=float) for _, g in frame.groupby("series_id", sort=True)]
    return [(y[:-HORIZON], y[-HORIZON:]) for y in series]


def ets_mase(windows: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    from statsforecast.models import AutoETS

    out = []
    for train, test in windows:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            forecast = AutoETS(season_length=12).forecast(y=train, h=HORIZON)["mean"]
        out.append(score(test, forecast, train).mase)
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--seasonality-z", type=float, default=global_network.SEASONALITY_Z)
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args()
    global_network.SEASONALITY_Z = args.seasonality_z
    windows = m1()
    ets = ets_mase(windows)
    print(f"M1, {len(windows)} series, h = {HORIZON}; AutoETS mean MASE {np.nanmean(ets):.3f}")
    print(f"network: default lstm, {args.steps} steps, seasonality test at {args.seasonality_z} standard errors")
    ratios = []
    for seed in args.seeds:
        start = time.perf_counter()
        config = model_config_for("lstm", "default", HORIZON, seed)
        model = global_network.GlobalForecaster(config, steps=args.steps).fit([train for train, _ in windows])
        forecasts = model.predict_many([train for train, _ in windows], HORIZON)
        mase = np.array([score(test, f, train).mase for (train, test), f in zip(windows, forecasts, strict=True)])
        ok = np.isfinite(mase) & np.isfinite(ets)
        ratio = float(mase[ok].mean() / ets[ok].mean())
        ratios.append(ratio)
        print(
            f"seed {seed}: mean MASE {mase[ok].mean():.3f}, {ratio:.3f} x AutoETS, beats it on "
            f"{int((mase[ok] < ets[ok]).sum())}/{int(ok.sum())} ({time.perf_counter() - start:.0f} s)"
        )
    spread = f" (sd {np.std(ratios, ddof=1):.3f})" if len(ratios) > 1 else ""
    print(f"mean over {len(ratios)} seed(s): {np.mean(ratios):.3f} x AutoETS{spread}")


if __name__ == "__main__":
    main()
