"""One conformance test over every model kind, plus the estimator contract."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from seqcast import artifacts
from seqcast.config import MODEL_KINDS, model_config_for
from seqcast.models import RecurrentForecaster, RecurrentNet


@pytest.fixture(scope="module")
def series(air) -> np.ndarray:
    return air["value"].to_numpy()


@pytest.mark.parametrize("kind", MODEL_KINDS)
@pytest.mark.parametrize("preset", ["default", "fast", "tutorial"])
def test_model_conformance(kind: str, preset: str, series: np.ndarray, tmp_path: Path) -> None:
    config = model_config_for(kind, preset, epochs=30)
    model = RecurrentForecaster(config)
    assert not hasattr(model, "net_")  # the constructor stores settings only

    net = RecurrentNet(kind, hidden=8, layers=2, out=5)
    assert net(torch.zeros(3, 12, 1)).shape == (3, 5)

    original = series.copy()
    model.fit(series[:-12])
    np.testing.assert_array_equal(series, original)  # inputs are never mutated
    forecast = model.predict(12)
    assert forecast.shape == (12,) and np.all(np.isfinite(forecast))
    assert len(model.history_) >= model.epochs_ >= 1
    assert model.predict(18).shape == (18,)  # beyond the head: fed back on itself

    path = artifacts.save_model(model, tmp_path / f"{kind}.pt")
    loaded = artifacts.load_model(path)
    np.testing.assert_array_equal(loaded.predict(12), forecast)


def test_predict_before_fit_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        RecurrentForecaster(model_config_for("gru")).predict(3)


def test_too_short_series_is_refused() -> None:
    with pytest.raises(ValueError, match="too short"):
        RecurrentForecaster(model_config_for("lstm")).fit(np.arange(20.0))


def test_same_data_and_seed_give_identical_forecasts(series: np.ndarray) -> None:
    config = model_config_for("lstm", epochs=25)
    a = RecurrentForecaster(config).fit(series).predict(12)
    torch.manual_seed(1234)  # the caller's global RNG state does not matter
    b = RecurrentForecaster(config).fit(series).predict(12)
    np.testing.assert_array_equal(a, b)


def test_different_seed_gives_a_different_network(series: np.ndarray) -> None:
    a = RecurrentForecaster(model_config_for("rnn", epochs=5, seed=0)).fit(series).predict(3)
    b = RecurrentForecaster(model_config_for("rnn", epochs=5, seed=1)).fit(series).predict(3)
    assert not np.array_equal(a, b)


class _Evil:
    """Unpickling this runs code: it creates `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_model_files_with_pickled_code_are_refused(tmp_path: Path) -> None:
    path, marker = tmp_path / "evil.pt", tmp_path / "code-ran"
    with open(path, "wb") as handle:
        torch.save({"payload": _Evil(marker)}, handle, pickle_module=pickle)
    with pytest.raises(pickle.UnpicklingError):
        artifacts.load_model(path)
    assert artifacts.try_load(path) is None
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Evil(marker)))  # the payload is live: plain unpickling does run it
    assert marker.exists()


def test_truncated_artifact_is_treated_as_missing(series: np.ndarray, tmp_path: Path) -> None:
    model = RecurrentForecaster(model_config_for("gru", epochs=3)).fit(series)
    path = artifacts.save_model(model, tmp_path / "m.pt")
    path.write_bytes(path.read_bytes()[:100])
    assert artifacts.try_load(path) is None


def test_skipping_the_validation_curve_gives_the_same_forecast(series: np.ndarray) -> None:
    config = model_config_for("gru", epochs=15, ensemble=2)
    with_curve = RecurrentForecaster(config).fit(series)
    without = RecurrentForecaster(config).fit(series, curve=False)
    np.testing.assert_array_equal(with_curve.predict(12), without.predict(12))
    assert any(row[2] is not None for row in with_curve.history_)
    assert all(row[2] is None for row in without.history_)
