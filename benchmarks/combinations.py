"""What the combination could average, scored on the test windows, and the ceilings of choosing with hindsight.

    python benchmarks/combinations.py [--sets m1 dev air]

Runs the backtest once per set with Theta as a third statistical candidate (`RunConfig(statistical=["ets", "ces",
"theta"])`, otherwise the product's default), on the accuracy benchmark's sets and windows plus the window before
them. Then, from the test forecasts of that one run and with the same metric code (`seqcast.backtest.window_metrics`),
it scores:

- each candidate, and the published forecast of that run;
- equal means of sets of members (what the combination is), each over the members a window has;
- per series, the best of the network and the statistical models chosen **with hindsight of the test months**:
  a ceiling no selection from these candidates can pass;
- every equal-weight combination of a wider pool (the run's candidates and baselines, and statsforecast's
  AutoARIMA, DynamicOptimizedTheta, HoltWinters and SES on the same windows), the best of them chosen **with
  hindsight**: a ceiling no fixed combination of these models can pass;
- whether the window before tells which series seasonal naive will beat the default's combination on.

Per set: mean and median MASE, and the series where each beats seasonal naive (on their mean MASE over the
windows). Intervals are not scored here (`benchmarks/accuracy.py` does, for what the product publishes).
"""

from __future__ import annotations

import argparse
import itertools
import warnings
from typing import Any

import numpy as np
import pandas as pd
from accuracy import SETS, load, statsforecast_rows

from seqcast import backtest as bt
from seqcast.config import RunConfig
from seqcast.evaluate import mase_scale

#: Kinds the run forecasts that are not fitted candidates (never combination members here).
NOT_MEMBERS = {"champion", "combination", "seasonal_naive", "naive"}
KEYS = ["series_id", "origin", "period", "step"]
REFERENCE = "statsforecast AutoETS"
#: The accuracy target the pool's combinations are held to: mean MASE at most this times AutoETS's.
TARGET_RATIO = 0.95


def variants(network: str) -> dict[str, list[str]]:
    return {
        "mean: network, ets, ces (the default)": [network, "ets", "ces"],
        "mean: + seasonal naive": [network, "ets", "ces", "seasonal_naive"],
        "mean: + theta": [network, "ets", "ces", "theta"],
        "mean: + theta + seasonal naive": [network, "ets", "ces", "theta", "seasonal_naive"],
        "median: + theta + seasonal naive": [network, "ets", "ces", "theta", "seasonal_naive"],
    }


def extra_models() -> dict[str, Any]:
    """statsforecast models that join the hindsight pool (none is a candidate of the product), and AutoETS."""
    from statsforecast.models import (
        AutoARIMA,
        AutoETS,
        DynamicOptimizedTheta,
        HoltWinters,
        SimpleExponentialSmoothingOptimized,
    )

    return {
        "arima": lambda: AutoARIMA(season_length=12),
        "dotm": lambda: DynamicOptimizedTheta(season_length=12),
        "holt_winters": lambda: HoltWinters(season_length=12),
        "ses": lambda: SimpleExponentialSmoothingOptimized(),
        REFERENCE: lambda: AutoETS(season_length=12),
    }


def combined(forecasts: pd.DataFrame, label: str, members: list[str]) -> pd.DataFrame:
    """Rows of a combination of `members`' test forecasts (the mean, or the median if `label` says so)."""
    wide = forecasts.pivot_table(index=KEYS, columns="model_kind", values="yhat")[members]
    yhat = wide.median(axis=1) if label.startswith("median") else wide.mean(axis=1)
    actual = forecasts.drop_duplicates(KEYS).set_index(KEYS)["y"]
    out = pd.DataFrame({"yhat": yhat, "y": actual.reindex(yhat.index)}).reset_index()
    return out.assign(model_kind=label, yhat_lower=np.nan, yhat_upper=np.nan, chosen=label)


def report(name: str, metrics: pd.DataFrame, ceiling_of: list[str]) -> None:
    per_series = metrics.groupby(["model_kind", "series_id"])["mase"].mean().unstack(0)
    naive = per_series["seasonal_naive"]
    ceiling = per_series[ceiling_of].min(axis=1)
    columns = {**{k: per_series[k] for k in per_series.columns}, f"hindsight best of {', '.join(ceiling_of)}": ceiling}
    print(f"\n{name}: {len(per_series)} series, {metrics['origin'].nunique()} origin(s)")
    print(f"{'forecast':52} {'MASE mean':>9} {'median':>7} {'beats SN':>14}")
    for label, mase in sorted(columns.items(), key=lambda item: float(item[1].mean())):
        beats = int((mase < naive).sum())
        print(
            f"{label:52} {mase.mean():>9.3f} {mase.median():>7.3f} {beats:>4}/{len(mase):<4}"
            f"{100 * beats / len(mase):>5.1f}%"
        )


class Scorer:
    """Per-series mean MASE of any forecast of a set of test rows, computed at once (for thousands of forecasts)."""

    def __init__(self, forecasts: pd.DataFrame, frame: pd.DataFrame) -> None:
        self.wide = forecasts.pivot_table(index=KEYS, columns="model_kind", values="yhat")
        self.actual = forecasts.drop_duplicates(KEYS).set_index(KEYS)["y"].reindex(self.wide.index).to_numpy()
        index = self.wide.index.to_frame(index=False)
        # Each row's window (series and origin), numbered in order of first appearance, as `windows` lists them.
        self.window = index.groupby(["series_id", "origin"], sort=False).ngroup().to_numpy()
        windows = index[["series_id", "origin"]].drop_duplicates()
        history = {sid: g.sort_values("period") for sid, g in frame.groupby("series_id")}
        self.scale = np.array(
            [
                mase_scale(history[sid]["value"].to_numpy()[(history[sid]["period"] <= pd.Timestamp(o)).to_numpy()])
                for sid, o in windows.itertuples(index=False)
            ]
        )
        self.owner, self.series = pd.factorize(windows["series_id"])

    def mase(self, yhat: np.ndarray) -> np.ndarray:
        """Per series (in `self.series` order), the mean over its windows of the MASE of `yhat` (one per row)."""
        error = np.abs(yhat - self.actual)
        per_window = np.bincount(self.window, error) / np.bincount(self.window) / self.scale
        return np.bincount(self.owner, per_window) / np.bincount(self.owner)

    def of(self, kinds: list[str]) -> np.ndarray:
        """Per-series MASE of the equal mean of `kinds` (over the members each row has)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # rows none of the kinds forecast: NaN, never better
            return self.mase(np.nanmean(self.wide[kinds].to_numpy(), axis=1))


def hindsight_search(scorer: Scorer, pool: list[str], default: list[str]) -> None:
    """Every equal-weight combination of `pool`, scored on the test windows: the most series beating seasonal naive
    any of them reaches (overall, and among those within the accuracy target), beside the default's."""
    naive, reference = scorer.of(["seasonal_naive"]), scorer.of([REFERENCE])
    results = []
    for size in range(1, len(pool) + 1):
        for members in itertools.combinations(pool, size):
            mase = scorer.of(list(members))
            results.append((int(np.sum(mase < naive)), float(np.nanmean(mase)), members))
    n = len(naive)
    limit = TARGET_RATIO * float(np.nanmean(reference))

    def line(label: str, beats: int, mean: float, members: tuple[str, ...]) -> None:
        print(
            f"  {label:34} {', '.join(members):64} {mean:>6.3f} {mean / np.nanmean(reference):>6.3f} "
            f"{beats:>4}/{n} {100 * beats / n:>5.1f}%"
        )

    print(f"\nEvery equal-weight combination of {', '.join(pool)} ({len(results)}), chosen with hindsight:")
    print(f"  {'':34} {'members':64} {'MASE':>6} {'/ETS':>6} {'beats SN':>13}")
    default_mase = scorer.of(default)
    line("the default's members", int(np.sum(default_mase < naive)), float(np.nanmean(default_mase)), tuple(default))
    for rank, (beats, mean, members) in enumerate(sorted(results, key=lambda r: (-r[0], r[1]))[:5], start=1):
        line(f"most beating seasonal naive #{rank}", beats, mean, members)
    within = [r for r in results if r[1] <= limit]
    if within:
        beats, mean, members = max(within, key=lambda r: (r[0], -r[1]))
        line(f"most of those <= {TARGET_RATIO} x AutoETS", beats, mean, members)


def previous_window(forecasts: pd.DataFrame, frame: pd.DataFrame, members: list[str], windows: int) -> None:
    """How often seasonal naive beats the combination of `members` in a test window, by whether it beat it in the
    window before (one horizon earlier: the months a monthly run's holdout would have scored)."""
    rows = combined(forecasts, "combination of members", members)
    metrics = bt.window_metrics(
        pd.concat([rows, forecasts[forecasts["model_kind"] == "seasonal_naive"]], ignore_index=True), frame
    )
    mase = metrics.pivot_table(index=["series_id", "origin"], columns="model_kind", values="mase")
    won = (mase["seasonal_naive"] < mase["combination of members"]).rename("won").reset_index()
    # Window 1 is each series' latest origin; window w + 1 the one before window w.
    won["window"] = won.groupby("series_id")["origin"].rank(method="dense", ascending=False).astype(int)
    before = won.assign(window=won["window"] - 1)
    pairs = won[won["window"] <= windows].merge(before, on=["series_id", "window"], suffixes=("", "_before"))
    after_win = pairs.loc[pairs["won_before"], "won"]
    after_loss = pairs.loc[~pairs["won_before"], "won"]
    print(
        f"\nSeasonal naive against the default's combination, window by window ({len(pairs)} with a window before):"
        f"\n  it beats it in the test on {100 * after_win.mean():.1f}% of the {len(after_win)} where it beat it "
        f"in the window before, on {100 * after_loss.mean():.1f}% of the {len(after_loss)} where it did not"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    args = parser.parse_args()
    config = RunConfig(statistical=["ets", "ces", "theta"])
    for name in args.sets:
        frame, horizon, windows = load(name)
        every, skipped = bt.run_backtest(frame, config, horizon, windows + 1)
        assert not skipped, skipped
        latest = every.groupby("series_id")["origin"].transform(lambda o: o.rank(method="dense", ascending=False))
        forecasts = every[latest <= windows]
        fitted = [k for k in forecasts["model_kind"].unique() if k not in NOT_MEMBERS]
        network = next(k for k in fitted if k not in config.statistical)
        rows = [forecasts, *(combined(forecasts, label, m) for label, m in variants(network).items())]
        metrics = bt.window_metrics(pd.concat(rows, ignore_index=True), frame, config.interval_levels)
        report(name, metrics, [network, *config.statistical])
        extra, _ = statsforecast_rows(frame, horizon, windows, extra_models())
        scorer = Scorer(pd.concat([forecasts, extra], ignore_index=True), frame)
        pool = [network, *config.statistical, *(k for k in extra_models() if k != REFERENCE), "seasonal_naive", "naive"]
        hindsight_search(scorer, pool, [network, "ets", "ces"])
        previous_window(every, frame, [network, "ets", "ces"], windows)


if __name__ == "__main__":
    main()
