"""Batched training against the one-by-one reference: same networks, same training, same forecasts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from seqcast import models, pipeline, workers
from seqcast.batched import Job, pays_off, stack_parameters, stacked_forward, stacks_of
from seqcast.config import RunConfig, model_config_for
from seqcast.models import RecurrentForecaster, RecurrentNet
from tests.conftest import metrics_frame, synthetic_panel


@pytest.mark.parametrize("kind", models.network_kinds())
@pytest.mark.parametrize("layers", [1, 2])
def test_the_stacked_recurrence_computes_what_torch_modules_compute(kind: str, layers: int) -> None:
    torch.manual_seed(0)
    nets = [RecurrentNet(kind, hidden=8, layers=layers, out=5) for _ in range(3)]
    x = torch.randn(3, 7, 10, 1)  # [members, windows, lookback, 1]
    stacked = stacked_forward(kind, layers, stack_parameters(nets), x.transpose(1, 2).contiguous())
    with torch.no_grad():
        expected = torch.stack([net(x[m]) for m, net in enumerate(nets)])
    assert stacked.shape == (3, 7, 5)
    torch.testing.assert_close(stacked.detach(), expected, rtol=1e-5, atol=1e-5)


def _panel(lengths: list[int]) -> list[np.ndarray]:
    """Seasonal series of different lengths (so windows are padded) and levels (so scales differ)."""
    rng = np.random.default_rng(1)
    out = []
    for i, n in enumerate(lengths):
        t = np.arange(n)
        out.append((50 + 30 * i) * (1 + 0.004 * t) * (1 + 0.25 * np.sin(2 * np.pi * t / 12)) + rng.normal(0, 1.5, n))
    return out


def _curve(model: RecurrentForecaster) -> np.ndarray:
    """[epochs, 2]: train and validation loss (NaN where a short series has no validation windows)."""
    return np.array([[t, np.nan if v is None else v] for _, t, v in model.history_], dtype=np.float64)


@pytest.mark.parametrize("kind", models.network_kinds())
def test_fit_many_gives_the_one_by_one_forecasts(kind: str) -> None:
    # Lengths 132 and 96 use the full lookback, 50 a shortened one, 20 (its own stack); two seeds each.
    series = _panel([132, 96, 50, 120])
    config = model_config_for(kind, epochs=25, ensemble=2)
    batched = RecurrentForecaster.fit_stacked(config, series)
    for y, got in zip(series, batched, strict=True):
        ref = RecurrentForecaster(config).fit(y)
        assert got.lookback_ == ref.lookback_
        assert got.epochs_ == ref.epochs_ and len(got.history_) == len(ref.history_)
        np.testing.assert_allclose(_curve(got), _curve(ref), rtol=2e-3)
        np.testing.assert_allclose(got.predict(12), ref.predict(12), rtol=1e-3)
    assert {m.lookback_ for m in batched} == {24, 20}


def test_fit_many_follows_early_stopping_per_member() -> None:
    series = _panel([132, 120, 108])
    config = model_config_for("gru", epochs=60, patience=3, lr=0.05)
    batched = RecurrentForecaster.fit_stacked(config, series)
    references = [RecurrentForecaster(config).fit(y) for y in series]
    assert any(len(ref.history_) < 60 for ref in references)  # early stopping did stop something
    for got, ref in zip(batched, references, strict=True):
        assert (got.epochs_, len(got.history_)) == (ref.epochs_, len(ref.history_))
        np.testing.assert_allclose(got.predict(12), ref.predict(12), rtol=1e-3)


def test_fit_many_is_deterministic() -> None:
    series = _panel([120, 100])
    config = model_config_for("lstm", epochs=10)
    first = [m.predict(12) for m in RecurrentForecaster.fit_stacked(config, series)]
    second = [m.predict(12) for m in RecurrentForecaster.fit_stacked(config, series)]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_large_groups_train_in_bounded_stacks_with_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    series = _panel([120, 110, 100, 96])
    config = model_config_for("gru", epochs=8, ensemble=2)
    whole = [m.predict(12) for m in RecurrentForecaster.fit_stacked(config, series)]
    monkeypatch.setattr("seqcast.batched.MAX_STACK", 3)  # 8 networks: stacks of 3, 3 and 2
    split = [m.predict(12) for m in RecurrentForecaster.fit_stacked(config, series)]
    monkeypatch.setattr("seqcast.batched.MAX_STACK", 256)
    monkeypatch.setattr("seqcast.batched.STACK_ELEMENTS", 1)  # a network per stack
    single = [m.predict(12) for m in RecurrentForecaster.fit_stacked(config, series)]
    for a, b, c in zip(whole, split, single, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4)
        np.testing.assert_allclose(a, c, rtol=1e-4)


def _jobs(kind: str, hidden: int, windows: list[int]) -> list[Job]:
    config = model_config_for(kind, hidden=hidden)
    return [Job(np.zeros((n, 12, 1), np.float32), np.zeros((n, 12), np.float32), config) for n in windows]


def test_stacks_group_similar_lengths_and_keep_under_the_element_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    windows = [200, 40, 180, 60, 190, 50, 170, 30]
    jobs = _jobs("lstm", 16, windows)
    ids = [10 + i for i in range(len(jobs))]
    monkeypatch.setattr("seqcast.batched.STACK_ELEMENTS", 3 * 200 * 4 * 16)  # three of the longest
    stacks = stacks_of(jobs, ids)
    assert sorted(i for stack in stacks for i in stack) == ids  # every network once
    lengths = [[windows[i - 10] for i in stack] for stack in stacks]
    assert lengths == [[30, 40, 50, 60], [170, 180, 190], [200]]  # short ones together, each stack under budget
    monkeypatch.setattr("seqcast.batched.MAX_STACK", 2)
    assert max(len(s) for s in stacks_of(jobs, ids)) == 2


def test_bigger_networks_train_in_smaller_stacks() -> None:
    windows = [150] * 200
    small = stacks_of(_jobs("rnn", 16, windows), list(range(200)))
    big = stacks_of(_jobs("gru", 32, windows), list(range(200)))
    assert len(small[0]) == 109 and len(big[0]) == 18  # 262,144 elements / (150 windows x gates x hidden)


def test_stacking_is_used_where_it_trains_faster() -> None:
    assert pays_off(model_config_for("rnn")) and pays_off(model_config_for("gru"))
    assert pays_off(model_config_for("lstm", "fast"))  # 16 hidden units
    assert not pays_off(model_config_for("lstm"))  # 32: torch's fused LSTM one by one is faster


def _run(tmp_path: Path, name: str, batched: bool, workers: int = 2) -> pd.DataFrame:
    source = tmp_path / "panel.csv"
    if not source.exists():
        frame = synthetic_panel(6, months=72)
        frame.assign(period=frame["period"].dt.strftime("%Y-%m")).to_csv(source, index=False)
    config = RunConfig(
        data_dir=str(tmp_path / name),
        sources=[str(source)],
        models=["rnn", "gru"],
        preset="local",
        statistical=[],
        epochs=20,
        chunk_size=4,
        batch_training=batched,
        workers=workers,
    )
    outcome = pipeline.run_pipeline(config)
    assert len(outcome.trained) == 6 and not outcome.skipped
    return metrics_frame(outcome)


def test_a_batched_run_publishes_what_a_one_by_one_run_publishes(tmp_path: Path) -> None:
    batched = _run(tmp_path, "batched", True)
    reference = _run(tmp_path, "one-by-one", False)
    keys = ["series_id", "model_kind", "is_champion"]
    pd.testing.assert_frame_equal(batched[keys], reference[keys])
    np.testing.assert_allclose(batched["mase"], reference["mase"], rtol=1e-3)


def test_a_failing_batch_falls_back_to_one_series_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = workers.fit_many

    def batch_explodes(config, series, curve, batched):  # type: ignore[no-untyped-def]
        if batched:
            raise RuntimeError("stack exploded")
        return real(config, series, curve, batched)

    monkeypatch.setattr(workers, "fit_many", batch_explodes)
    # One worker: the chunk jobs run in this process, where the patch is.
    metrics = _run(tmp_path, "fallback", True, workers=1)
    assert set(metrics["model_kind"]) == {"rnn", "gru", "combination", "seasonal_naive", "naive"}
    assert "training them one by one" in caplog.text and "stack exploded" in caplog.text
