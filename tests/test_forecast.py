"""Per-series validation, champion selection and intervals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqcast import forecast as fc
from seqcast import lake
from seqcast.config import model_config_for
from seqcast.evaluate import seasonal_naive


def test_interval_widens_with_the_step_and_is_relative_for_positive_series() -> None:
    actual = np.full(12, 100.0)
    predicted = actual * np.exp(np.linspace(-0.1, 0.1, 12))
    yhat = np.full(12, 200.0)
    lower, upper = fc.conformal_interval(yhat, actual, predicted, 0.8)
    widths = upper - lower
    assert np.all(np.diff(widths) > 0)
    np.testing.assert_allclose(upper / yhat, yhat / lower)  # symmetric in log space
    assert np.all(lower > 0)


def test_interval_is_additive_when_values_can_be_negative() -> None:
    actual = np.array([-1.0, 2.0, -3.0, 4.0])
    predicted = actual + np.array([0.5, -0.5, 1.0, -1.0])
    lower, upper = fc.conformal_interval(np.zeros(4), actual, predicted, 0.5)
    np.testing.assert_allclose(-lower, upper)
    assert upper[0] > 0


def test_interval_quantile_covers_the_level_of_normalised_holdout_errors() -> None:
    rng = np.random.default_rng(3)
    errors = rng.normal(0, 1, 12) * np.sqrt(np.arange(1, 13))
    actual = np.full(12, 50.0) + errors
    lower, upper = fc.conformal_interval(np.full(12, 50.0), actual, np.full(12, 50.0), 0.8)
    inside = (actual >= lower) & (actual <= upper)
    assert 0.75 <= inside.mean() <= 0.9


@pytest.fixture
def air_ref(air: pd.DataFrame, tmp_path: Path) -> dict:
    frame = air.assign(is_filled=False)
    (ref,) = lake.snapshot(frame, tmp_path / "lake")
    return ref.to_dict()


def test_default_model_beats_seasonal_naive_on_the_1960_holdout(air_ref: dict, tmp_path: Path) -> None:
    configs = [model_config_for("lstm")]
    validation = fc.validate_series(air_ref, configs, 12, tmp_path / "models")
    naive, lstm = (validation["candidates"][k]["metrics"] for k in ("seasonal_naive", "lstm"))
    assert lstm["mase"] < naive["mase"]
    assert validation["holdout_start"] == "1960-01-01" and validation["holdout_end"] == "1960-12-01"


def test_champion_is_the_best_holdout_candidate_seasonal_naive_included(air_ref: dict, tmp_path: Path) -> None:
    configs = [model_config_for("rnn", epochs=1)]  # one epoch: a network that cannot beat the baseline
    validation = fc.validate_series(air_ref, configs, 12, tmp_path / "models")
    final = fc.train_series(air_ref, configs, tmp_path / "models")
    published = fc.forecast_series(air_ref, validation, final, 12, 0.8)
    scores = {k: c["metrics"]["mase"] for k, c in validation["candidates"].items()}
    assert published["champion"] == min(scores, key=scores.get)
    champion_rows = [r for r in published["rows"] if r["is_champion"]]
    assert len(champion_rows) == 12
    if published["champion"] == "seasonal_naive":
        y = lake.read_series(air_ref)["value"].to_numpy()
        np.testing.assert_allclose([r["yhat"] for r in champion_rows], seasonal_naive(y, 12))


def test_stored_models_are_reused_for_the_same_data_and_config(air_ref: dict, tmp_path: Path) -> None:
    configs = [model_config_for("gru", epochs=5)]
    first = fc.train_series(air_ref, configs, tmp_path / "models")
    again = fc.train_series(air_ref, configs, tmp_path / "models")
    assert first["models"]["gru"]["trained"] and not again["models"]["gru"]["trained"]
    assert first["models"]["gru"]["model_id"] == again["models"]["gru"]["model_id"]
    other = fc.train_series(air_ref, [model_config_for("gru", epochs=6)], tmp_path / "models")
    assert (
        other["models"]["gru"]["trained"] and other["models"]["gru"]["model_id"] != first["models"]["gru"]["model_id"]
    )
