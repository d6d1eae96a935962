"""What the combination could average, scored on the test windows, and the ceiling of choosing with hindsight.

    python benchmarks/combinations.py [--sets m1 dev air]

Runs the backtest once per set with Theta as a third statistical candidate (`RunConfig(statistical=["ets", "ces",
"theta"])`, otherwise the product's default), on the accuracy benchmark's sets and windows. Then, from the test
forecasts of that one run and with the same metric code (`seqcast.backtest.window_metrics`), it scores:

- each candidate, and the published forecast of that run;
- equal means of sets of members (what the combination is), each over the members a window has;
- per series, the best of the network and the statistical models chosen **with hindsight of the test months**:
  a ceiling no selection from these candidates can pass.

Per set: mean and median MASE, and the series where each beats seasonal naive (on their mean MASE over the
windows). Intervals are not scored here (`benchmarks/accuracy.py` does, for what the product publishes).
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from accuracy import SETS, load

from seqcast import backtest as bt
from seqcast.config import RunConfig

#: Kinds the run forecasts that are not fitted candidates (never combination members here).
NOT_MEMBERS = {"champion", "combination", "seasonal_naive", "naive"}
KEYS = ["series_id", "origin", "period", "step"]


def variants(network: str) -> dict[str, list[str]]:
    return {
        "mean: network, ets, ces (the default)": [network, "ets", "ces"],
        "mean: + seasonal naive": [network, "ets", "ces", "seasonal_naive"],
        "mean: + theta": [network, "ets", "ces", "theta"],
        "mean: + theta + seasonal naive": [network, "ets", "ces", "theta", "seasonal_naive"],
        "median: + theta + seasonal naive": [network, "ets", "ces", "theta", "seasonal_naive"],
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    args = parser.parse_args()
    config = RunConfig(statistical=["ets", "ces", "theta"])
    for name in args.sets:
        frame, horizon, windows = load(name)
        forecasts, skipped = bt.run_backtest(frame, config, horizon, windows)
        assert not skipped, skipped
        fitted = [k for k in forecasts["model_kind"].unique() if k not in NOT_MEMBERS]
        network = next(k for k in fitted if k not in config.statistical)
        rows = [forecasts, *(combined(forecasts, label, m) for label, m in variants(network).items())]
        metrics = bt.window_metrics(pd.concat(rows, ignore_index=True), frame, config.interval_levels)
        report(name, metrics, [network, *config.statistical])


if __name__ == "__main__":
    main()
