"""The global model: one network across all series, scored on the same holdout as every candidate."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from flows.monthly_forecast import monthly_forecast
from seqcast import artifacts, pipeline
from seqcast.config import RunConfig, model_config_for
from seqcast.models.global_network import GlobalForecaster
from seqcast.records import Candidate
from tests.conftest import metrics_frame, synthetic_panel


@pytest.fixture(scope="module")
def panel() -> list[np.ndarray]:
    frame = synthetic_panel(5, months=84, seed=3)
    return [g["value"].to_numpy() for _, g in frame.groupby("series_id")]


def test_global_model_fits_many_series_and_forecasts_each_deterministically(
    panel: list[np.ndarray], tmp_path: Path
) -> None:
    config = model_config_for("gru", ensemble=2)
    model = GlobalForecaster(config, steps=150).fit([y[:-12] for y in panel])
    assert model.n_series_ == 5 and model.n_windows_ > 5 * 20
    assert len(model.history_) == 50  # the loss curve: mean loss per stretch of 3 steps
    assert model.history_[-1][1] < model.history_[0][1]  # it learned
    forecasts = model.predict_many([y[:-12] for y in panel], 12)
    errors = [np.mean(np.abs(f / y[-12:] - 1)) for f, y in zip(forecasts, panel, strict=True)]
    assert max(errors) < 0.15  # seasonal synthetic series: within 15% on average

    again = GlobalForecaster(config, steps=150).fit([y[:-12] for y in panel])
    np.testing.assert_array_equal(again.predict(panel[0][:-12], 12), forecasts[0])

    artifacts.save_model(model, tmp_path / "global.pt")
    loaded = artifacts.load_model(tmp_path / "global.pt", "global_gru")
    np.testing.assert_array_equal(loaded.predict(panel[2][:-12], 12), forecasts[2])
    from seqcast.models import RecurrentForecaster

    artifacts.save_model(RecurrentForecaster(config).fit(panel[0]), tmp_path / "one.pt")
    with pytest.raises(artifacts.ArtifactError, match="a gru model, not global_gru"):
        artifacts.load_model(tmp_path / "one.pt", "global_gru")
    with pytest.raises(ValueError, match="too short for the global model"):
        model.predict(panel[0][:8], 12)


def test_members_trained_in_processes_equal_members_trained_here(panel: list[np.ndarray]) -> None:
    from seqcast import workers

    config = model_config_for("lstm", ensemble=2)
    here = workers.fit_globals([(config, 60, 256, [y[:-12] for y in panel])])[0]
    with workers.training_processes(2):
        there = workers.fit_globals([(config, 60, 256, [y[:-12] for y in panel])])[0]
    np.testing.assert_array_equal(here.predict(panel[1][:-12], 12), there.predict(panel[1][:-12], 12))


def test_seasonality_is_taken_out_only_where_a_test_finds_it() -> None:
    from seqcast.models.global_network import seasonal_pattern

    t = np.arange(96)
    seasonal = np.log(100 + 20 * np.sin(2 * np.pi * t / 12))
    pattern = seasonal_pattern(seasonal)
    assert pattern.shape == (12,) and abs(pattern.sum()) < 1e-9 and pattern.max() > 0.1
    assert not seasonal_pattern(seasonal[:20]).any()  # shorter than two seasons
    # The test is at one standard error: white noise is deseasonalised now and then (about a fifth of the time
    # at 96 months), a weak seasonal pattern under noise three times smaller every time.
    rng = np.random.default_rng(0)
    noise = [seasonal_pattern(np.log(100 + rng.normal(0, 1, 96))).any() for _ in range(400)]
    assert 0.1 < np.mean(noise) < 0.35
    weak = [
        seasonal_pattern(np.log(100 + 3 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1, 96))).any() for _ in range(100)
    ]
    assert all(weak)


def test_the_pattern_taken_out_is_the_last_six_years_one_at_the_series_positions() -> None:
    from seqcast.models.global_network import PATTERN_MONTHS, Shape, seasonal_pattern

    # 20 years whose seasonal peak moved by three months 14 years ago, starting in the 5th month of a year.
    t = np.arange(240)
    old, new = np.sin(2 * np.pi * (t + 3) / 12), np.sin(2 * np.pi * t / 12)
    y = 100 + 0.1 * t + 10 * np.where(t < 240 - PATTERN_MONTHS, old, new)
    pattern = Shape.of(y).pattern
    recent = seasonal_pattern(np.log(y[-PATTERN_MONTHS:]))  # by position in the last 72 months: aligned, 240 % 12 = 0
    np.testing.assert_allclose(pattern, recent)
    assert np.argmax(pattern) == 3  # the recent peak (sin peaks at month 3 of 12), not the old one (month 0)
    assert np.abs(seasonal_pattern(np.log(y)) - pattern).max() > 0.02  # the whole history's mixes both
    # The positions follow the series, whatever month of the year its last six years start in.
    shifted = Shape.of(y[5:]).pattern
    np.testing.assert_allclose(shifted, np.roll(pattern, -5))
    # Adjusted, the recent years are trend alone: next to a straight line they vary a tenth as much as before.
    recent_t, recent_z = t[-PATTERN_MONTHS:], np.log(y[-PATTERN_MONTHS:])
    adjusted = Shape.of(y).transform(y)[-PATTERN_MONTHS:]

    def off_line(v: np.ndarray) -> float:
        return float(np.std(v - np.polyval(np.polyfit(recent_t, v, 1), recent_t)))

    assert off_line(adjusted) < 0.1 * off_line(recent_z)


def _query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def _config(tmp_path: Path, **extra: object) -> RunConfig:
    source = tmp_path / "panel.csv"
    frame = synthetic_panel(5, months=84, seed=3)
    frame.assign(period=frame["period"].dt.strftime("%Y-%m")).to_csv(source, index=False)
    return RunConfig(
        data_dir=str(tmp_path / "data"),
        sources=[str(source)],
        models=["gru"],
        statistical=["ces"],
        global_steps=100,
        **extra,  # type: ignore[arg-type]
    )


def test_the_global_model_competes_for_champion_on_the_same_holdout(tmp_path: Path) -> None:
    config = _config(tmp_path)
    outcome = pipeline.run_pipeline(config)
    db = tmp_path / "data" / "seqcast.db"
    metrics = metrics_frame(outcome)
    kinds = {"global_gru", "ces", "combination", "seasonal_naive", "naive"}
    assert set(metrics["model_kind"]) == kinds
    assert {m.holdout_start for m in outcome.metrics} == {"2021-01-01"}
    for _, group in metrics.groupby("series_id"):
        assert len(group) == len(kinds)
        # The champion: the combination, unless one is clearly better on the holdout (its MASE under 30%).
        best = group.sort_values("mase").iloc[0]
        combination = group.set_index("model_kind").loc["combination", "mase"]
        expected = best["model_kind"] if best["mase"] < 0.3 * combination else "combination"
        assert group.loc[group["is_champion"], "model_kind"].item() == expected
    assert _query(db, "SELECT series_id, purpose, epochs FROM model_runs WHERE model_kind = 'global_gru'") in (
        [("*", "holdout", 100), ("*", "final", 100)],
        [("*", "final", 100), ("*", "holdout", 100)],
    )
    global_rows = _query(db, "SELECT COUNT(*), COUNT(DISTINCT series_id) FROM forecasts WHERE model_kind='global_gru'")
    assert global_rows == [(5 * 12, 5)]

    # Unchanged data: the global model is reused like every other model.
    models_before = _query(db, "SELECT model_id, trained_at FROM model_runs ORDER BY model_id")
    again = pipeline.run_pipeline(config.model_copy(update={"sources": []}))
    assert list(again.trained) == [] and len(again.reused) == 5
    assert _query(db, "SELECT model_id, trained_at FROM model_runs ORDER BY model_id") == models_before


def test_a_forced_global_champion_is_published(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever the scores, a champion that is the global model publishes the global model's forecast.
    from seqcast import forecast as fc

    original = fc.global_candidates

    def perfect(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        result = original(*args, **kwargs)  # type: ignore[arg-type]
        return [
            dataclasses.replace(
                r,
                candidates={
                    sid: Candidate(c.kind, dataclasses.replace(c.scores, mase=0.0), c.prediction, c.model)
                    for sid, c in r.candidates.items()
                },
            )
            for r in result
        ]

    monkeypatch.setattr(fc, "global_candidates", perfect)
    # One worker: the global model is fitted in this process, where the patch is.
    outcome = pipeline.run_pipeline(_config(tmp_path, workers=1))
    assert set(outcome.champions.values()) == {"global_gru"}
    latest = _query(tmp_path / "data" / "seqcast.db", "SELECT DISTINCT model_kind FROM latest_forecasts")
    assert latest == [("global_gru",)]


@pytest.mark.usefixtures("prefect_harness")
def test_the_flow_runs_the_global_model_as_a_cached_task(tmp_path: Path) -> None:
    config = _config(tmp_path)
    first = monthly_forecast(config)
    assert first["task_states"]["global-model"] == "Completed"
    assert "global_gru" in {m.model_kind for m in first["outcome"].metrics}
    second = monthly_forecast(config.model_copy(update={"sources": []}))
    assert second["task_states"]["global-model"] == "Cached"
    assert list(second["outcome"].trained) == []
