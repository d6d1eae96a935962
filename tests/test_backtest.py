"""Rolling-origin backtests: origins, no peeking, metrics table and CSV."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from seqcast import backtest as bt
from seqcast.cli import app
from seqcast.config import model_config_for
from seqcast.ingest import bundled_series_path

CONFIGS = [model_config_for("gru", epochs=15), model_config_for("rnn", epochs=15)]


def test_origins_steps_and_champion_rows(air: pd.DataFrame) -> None:
    forecasts, skipped = bt.run_backtest(air, CONFIGS, horizon=12, windows=2, workers=1)
    assert skipped == []
    assert sorted(forecasts["origin"].unique()) == ["1958-12-01", "1959-12-01"]  # n-24 and n-12
    assert set(forecasts["model_kind"]) == {"gru", "rnn", "seasonal_naive", "champion"}
    one = forecasts[(forecasts["model_kind"] == "gru") & (forecasts["origin"] == "1959-12-01")]
    assert one["step"].tolist() == list(range(1, 13))
    assert one["period"].iloc[0] == "1960-01-01" and one["period"].iloc[-1] == "1960-12-01"
    np.testing.assert_array_equal(one["y"], air["value"].iloc[-12:])
    champion = forecasts[forecasts["model_kind"] == "champion"]
    for origin, rows in champion.groupby("origin"):
        chosen = rows["chosen"].iloc[0]
        same = forecasts[(forecasts["model_kind"] == chosen) & (forecasts["origin"] == origin)]
        np.testing.assert_array_equal(rows["yhat"], same["yhat"])
    assert (forecasts["yhat_lower"] <= forecasts["yhat"]).all() and (forecasts["yhat"] <= forecasts["yhat_upper"]).all()


def test_forecasts_at_an_origin_never_see_later_data(air: pd.DataFrame) -> None:
    changed = air.copy()
    changed.loc[changed.index[-12:], "value"] *= 3  # only the last window's actuals differ
    a, _ = bt.run_backtest(air, CONFIGS[:1], horizon=12, windows=2, workers=1)
    b, _ = bt.run_backtest(changed, CONFIGS[:1], horizon=12, windows=2, workers=1)
    first = "1958-12-01"
    pd.testing.assert_frame_equal(
        a[a["origin"] == first].reset_index(drop=True), b[b["origin"] == first].reset_index(drop=True)
    )
    assert not a[a["origin"] == "1959-12-01"]["y"].equals(b[b["origin"] == "1959-12-01"]["y"])


def test_window_metrics_scale_mase_by_that_windows_training_data(air: pd.DataFrame) -> None:
    forecasts, _ = bt.run_backtest(air, CONFIGS[:1], horizon=12, windows=2, workers=1)
    metrics = bt.window_metrics(forecasts, air)
    naive = metrics[(metrics["model_kind"] == "seasonal_naive") & (metrics["origin"] == "1958-12-01")].iloc[0]
    train = air["value"].iloc[:-24].to_numpy()
    scale = np.mean(np.abs(train[12:] - train[:-12]))
    actual, predicted = air["value"].iloc[-24:-12].to_numpy(), train[-12:]
    assert naive["mase"] == np.mean(np.abs(actual - predicted)) / scale
    assert 0.0 <= naive["coverage"] <= 1.0


def test_short_series_are_skipped(air: pd.DataFrame) -> None:
    short = air.head(40).assign(series_id="short")
    forecasts, skipped = bt.run_backtest(pd.concat([air, short]), CONFIGS[:1], horizon=12, windows=3, workers=1)
    assert skipped[0]["series_id"] == "short" and skipped[0]["reason"].startswith("too short")
    assert set(forecasts["series_id"]) == {"air_passengers"}


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
            "rnn",
            "--epochs",
            "10",
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
    assert len(csv) == 2 * 12 * 3  # rnn, seasonal naive, champion
    with sqlite3.connect(tmp_path / "data" / "seqcast.db") as conn:
        rows = conn.execute(
            "SELECT model_kind, origin, mase FROM backtest_metrics ORDER BY model_kind, origin"
        ).fetchall()
    assert [(k, o) for k, o, _ in rows] == [
        ("champion", "1958-12-01"),
        ("champion", "1959-12-01"),
        ("rnn", "1958-12-01"),
        ("rnn", "1959-12-01"),
        ("seasonal_naive", "1958-12-01"),
        ("seasonal_naive", "1959-12-01"),
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
