"""Rolling-origin backtests: origins, no peeking, metrics table and CSV."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from seqcast import backtest as bt
from seqcast.cli import app
from seqcast.config import RunConfig
from seqcast.ingest import bundled_series_path

#: Orchestration of the procedure: the deterministic stand-in and one statistical kind beside the baselines.
CONFIG = RunConfig(models=["fake"], statistical=["ets"], workers=1)


def test_origins_steps_and_champion_rows(air: pd.DataFrame) -> None:
    forecasts, skipped = bt.run_backtest(air, CONFIG, horizon=12, windows=2)
    assert skipped == []
    assert sorted(forecasts["origin"].unique()) == ["1958-12-01", "1959-12-01"]  # n-24 and n-12
    assert set(forecasts["model_kind"]) == {"fake", "ets", "combination", "seasonal_naive", "naive", "champion"}
    one = forecasts[(forecasts["model_kind"] == "fake") & (forecasts["origin"] == "1959-12-01")]
    assert one["step"].tolist() == list(range(1, 13))
    assert one["period"].iloc[0] == "1960-01-01" and one["period"].iloc[-1] == "1960-12-01"
    np.testing.assert_array_equal(one["y"], air["value"].iloc[-12:])
    champion = forecasts[forecasts["model_kind"] == "champion"]
    for origin, rows in champion.groupby("origin"):
        chosen = rows["chosen"].iloc[0]
        same = forecasts[(forecasts["model_kind"] == chosen) & (forecasts["origin"] == origin)]
        np.testing.assert_array_equal(rows["yhat"], same["yhat"])
    inside = forecasts[["yhat_lower_outer", "yhat_lower", "yhat", "yhat_upper", "yhat_upper_outer"]].to_numpy()
    assert (np.diff(inside, axis=1) >= 0).all()


def test_forecasts_at_an_origin_never_see_later_data(air: pd.DataFrame) -> None:
    changed = air.copy()
    changed.loc[changed.index[-12:], "value"] *= 3  # only the last window's actuals differ
    a, _ = bt.run_backtest(air, CONFIG, horizon=12, windows=2)
    b, _ = bt.run_backtest(changed, CONFIG, horizon=12, windows=2)
    first = "1958-12-01"
    pd.testing.assert_frame_equal(
        a[a["origin"] == first].reset_index(drop=True), b[b["origin"] == first].reset_index(drop=True)
    )
    assert not a[a["origin"] == "1959-12-01"]["y"].equals(b[b["origin"] == "1959-12-01"]["y"])


def test_window_metrics_scale_mase_by_that_windows_training_data(air: pd.DataFrame) -> None:
    forecasts, _ = bt.run_backtest(air, CONFIG, horizon=12, windows=2)
    metrics = bt.window_metrics(forecasts, air)
    naive = metrics[(metrics["model_kind"] == "seasonal_naive") & (metrics["origin"] == "1958-12-01")].iloc[0]
    train = air["value"].iloc[:-24].to_numpy()
    scale = np.mean(np.abs(train[12:] - train[:-12]))
    actual, predicted = air["value"].iloc[-24:-12].to_numpy(), train[-12:]
    assert naive["mase"] == np.mean(np.abs(actual - predicted)) / scale
    assert 0.0 <= naive["coverage"] <= naive["coverage_outer"] <= 1.0


def test_no_window_is_dropped_for_length(air: pd.DataFrame) -> None:
    # 40 months and 3 windows of 12: origins after 4, 16 and 28 months; each is forecast by what its history
    # allows (naive from 4 months; more models as the history grows).
    short = air.head(40).assign(series_id="short")
    gappy = air.drop(index=air.index[50]).assign(series_id="gappy")
    forecasts, skipped = bt.run_backtest(pd.concat([air, short, gappy]), CONFIG, horizon=12, windows=3)
    assert skipped == [{"series_id": "gappy", "reason": "missing months"}]
    champion = forecasts[(forecasts["series_id"] == "short") & (forecasts["model_kind"] == "champion")]
    assert sorted(champion["origin"].unique()) == ["1949-04-01", "1950-04-01", "1951-04-01"]
    assert len(champion) == 3 * 12
    by_origin = champion.groupby("origin")["chosen"].first().to_dict()
    assert by_origin["1949-04-01"] == "naive"  # four months: too short for the others, and for a holdout


def test_the_product_default_backtests_with_its_global_network(air: pd.DataFrame) -> None:
    # The real default (a global lstm, ets and ces, their combination) on the bundled series, one origin.
    forecasts, _ = bt.run_backtest(air, RunConfig(global_steps=200), horizon=12, windows=1)
    kinds = set(forecasts["model_kind"])
    assert {"global_lstm", "ets", "ces", "combination", "champion"} <= kinds
    metrics = bt.window_metrics(forecasts, air).set_index("model_kind")
    assert metrics.loc["combination", "mase"] < metrics.loc["seasonal_naive", "mase"]


def test_backtest_command_writes_table_and_csv(tmp_path: Path) -> None:
    out = tmp_path / "bt.csv"
    result = CliRunner().invoke(
        app,
        [
            "backtest",
            "--source",
            str(bundled_series_path()),
            "--horizon",
            "12",
            "--windows",
            "2",
            "--model",
            "fake",
            "--statistical",
            "none",
            "--output",
            str(out),
            "--data-dir",
            str(tmp_path / "data"),
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output + result.stderr
    csv = pd.read_csv(out)
    assert list(csv.columns)[:7] == ["series_id", "model_kind", "origin", "period", "step", "yhat", "y"]
    assert len(csv) == 2 * 12 * 4  # fake, seasonal naive, naive, champion
    with sqlite3.connect(tmp_path / "data" / "seqcast.db") as conn:
        rows = conn.execute(
            "SELECT model_kind, origin, mase FROM backtest_metrics ORDER BY model_kind, origin"
        ).fetchall()
    assert [(k, o) for k, o, _ in rows] == [
        (kind, origin)
        for kind in ("champion", "fake", "naive", "seasonal_naive")
        for origin in ("1958-12-01", "1959-12-01")
    ]


def test_backtest_csv_cells_cannot_become_spreadsheet_formulas(tmp_path: Path) -> None:
    rows = pd.DataFrame(
        {
            "series_id": ["=cmd|' /C calc'!A0", "+1", "@SUM(A1)", "-2", "plain"],
            "model_kind": "rnn",
            "origin": "2020-01-01",
            "period": "2020-02-01",
            "step": 1,
            "yhat": -1.5,
            "y": 2.0,
            "yhat_lower": -3.0,
            "yhat_upper": 0.0,
        }
    )
    path = bt.write_csv(rows, tmp_path / "out.csv")
    back = pd.read_csv(path)
    assert back["series_id"].tolist() == ["'=cmd|' /C calc'!A0", "'+1", "'@SUM(A1)", "'-2", "plain"]
    assert back["yhat"].tolist() == [-1.5] * 5  # numbers stay numbers
