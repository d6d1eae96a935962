"""One conformance test over every registered model kind, plus the estimator contract and safe artifacts."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from seqcast import artifacts, models
from seqcast.config import RunConfig, model_config_for
from seqcast.models import RecurrentForecaster, RecurrentNet


@pytest.fixture(scope="module")
def series(air) -> np.ndarray:
    return air["value"].to_numpy()


def _fitted_attributes(model: object) -> list[str]:
    return [name for name in vars(model) if name.endswith("_") and not name.startswith("_")]


PER_SERIES = [k.name for k in models.REGISTRY.values() if not (k.is_global or k.derived)]
GLOBAL = [k.name for k in models.REGISTRY.values() if k.is_global]


@pytest.mark.parametrize("kind", PER_SERIES)
def test_every_per_series_kind_conforms(kind: str, series: np.ndarray, tmp_path: Path) -> None:
    spec = models.kind(kind)
    config = model_config_for(kind, epochs=20)
    model = spec.forecaster()(config)
    assert isinstance(model, models.Forecaster)
    assert _fitted_attributes(model) == []  # the constructor stores settings only
    # Its stated minimum is a length it fits: the shortest series the fallback chain hands it.
    shortest = series[-model.min_length() :]
    assert len(shortest) == model.min_length() < len(series)
    assert np.all(np.isfinite(spec.forecaster()(config).fit(shortest).predict(3)))

    original = series.copy()
    model.fit(series[:-12])
    np.testing.assert_array_equal(series, original)  # inputs are never mutated
    assert {"history_", "epochs_", "train_seconds_"} <= set(_fitted_attributes(model))
    forecast = model.predict(12)
    assert forecast.shape == (12,) and np.all(np.isfinite(forecast))
    assert model.predict(18).shape == (18,)  # beyond a direct head: fed back on itself
    assert model.predict(12, history=series).shape == (12,)
    many = spec.forecaster().fit_many(config, [series[:-12], series], False, True)
    np.testing.assert_allclose(many[0].predict(12), forecast, rtol=1e-4)
    again = spec.forecaster()(config).fit(series[:-12]).predict(12)
    np.testing.assert_array_equal(again, forecast)  # deterministic

    if spec.stored:  # save then load gives identical forecasts
        path = tmp_path / f"{kind}.pt"
        digest = artifacts.save_model(model, path)
        assert digest == artifacts.file_sha256(path) == artifacts.recorded_sha256(path)
        loaded = artifacts.load_model(path, kind)
        np.testing.assert_array_equal(loaded.predict(12), forecast)


@pytest.mark.parametrize("kind", GLOBAL)
def test_every_global_kind_conforms(kind: str, series: np.ndarray, tmp_path: Path) -> None:
    spec = models.kind(kind)
    config = model_config_for(kind.removeprefix(models.GLOBAL_PREFIX), "default", ensemble=2)
    model = spec.forecaster()(config, 30)  # type: ignore[call-arg]
    assert _fitted_attributes(model) == []
    model.fit([series, series[:-24] * 2, series[:20]])  # the last is too short for a window: left out
    assert model.n_series_ == 2 and len(model.nets_) == 2
    forecast = model.predict(series, 12)
    assert forecast.shape == (12,) and np.all(np.isfinite(forecast))
    path = tmp_path / f"{kind}.pt"
    artifacts.save_model(model, path)
    np.testing.assert_array_equal(artifacts.load_model(path, kind).predict(series, 12), forecast)


def test_the_registry_drives_configuration_and_help() -> None:
    assert models.selectable_kinds() == ["rnn", "lstm", "gru"]
    assert models.baseline_kinds() == ["seasonal_naive", "naive"]
    assert models.statistical_kinds() == ["ets", "ces", "theta"]
    assert [models.global_kind(k) for k in models.network_kinds()] == GLOBAL
    for name in models.selectable_kinds():
        assert name in models.help_text()
        assert RunConfig(models=[name]).models == [name]
    with pytest.raises(ValueError, match="unknown model kind 'transformer': use one of rnn, lstm, gru"):
        RunConfig(models=["transformer"])
    with pytest.raises(ValueError, match="unknown statistical kind 'arima': use one of ets, ces, theta"):
        RunConfig(statistical=["arima"])
    assert [c.kind for c in RunConfig(models=["gru"]).global_configs()] == ["gru"]  # the default: one network
    assert [c.kind for c in RunConfig(models=["gru"], preset="local").model_configs()] == ["gru", "ets", "ces"]


def test_recurrent_net_output_shape() -> None:
    net = RecurrentNet("gru", hidden=8, layers=2, out=5)
    assert net(torch.zeros(3, 12, 1)).shape == (3, 5)  # [batch, lookback, 1] -> [batch, out]


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
    # Even with a matching recorded hash (someone who can write the file can write that too).
    (tmp_path / "evil.pt.sha256").write_text(artifacts.file_sha256(path))
    with pytest.raises(artifacts.ArtifactError, match="unreadable"):
        artifacts.load_model(path)
    assert artifacts.try_load(path) is None
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Evil(marker)))  # the payload is live: plain unpickling does run it
    assert marker.exists()


def test_altered_truncated_or_unrecorded_artifacts_are_never_used(series: np.ndarray, tmp_path: Path) -> None:
    model = RecurrentForecaster(model_config_for("gru", epochs=3)).fit(series)
    for damage in ("flip", "truncate", "no-hash"):
        path = tmp_path / f"{damage}.pt"
        artifacts.save_model(model, path)
        data = bytearray(path.read_bytes())
        if damage == "flip":
            data[-200:-136] = bytes(b ^ 0xFF for b in data[-200:-136])  # 64 bytes of a tensor
            path.write_bytes(bytes(data))
        elif damage == "truncate":
            path.write_bytes(bytes(data[:100]))
        else:
            (tmp_path / f"{damage}.pt.sha256").unlink()
        assert not artifacts.verified(path)
        with pytest.raises(artifacts.ArtifactError):
            artifacts.load_model(path)
        assert artifacts.try_load(path) is None


def test_skipping_the_validation_curve_gives_the_same_forecast(series: np.ndarray) -> None:
    config = model_config_for("gru", epochs=15, ensemble=2)
    with_curve = RecurrentForecaster(config).fit(series)
    without = RecurrentForecaster(config).fit(series, curve=False)
    np.testing.assert_array_equal(with_curve.predict(12), without.predict(12))
    assert any(row[2] is not None for row in with_curve.history_)
    assert all(row[2] is None for row in without.history_)
