"""`RecurrentForecaster`: one estimator for simple RNN, LSTM and GRU networks (the kinds `rnn`, `lstm`, `gru`).

Following the estimator contract: the constructor stores settings only; `fit` sets the fitted state
(attributes ending in `_`); inputs are never mutated.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from seqcast.batched import Job, pays_off, train_many
from seqcast.config import ModelConfig
from seqcast.train import TrainResult, train_network
from seqcast.windows import Scaler, fit_scaler, history_needed, last_window, make_windows

CELLS: dict[str, Any] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentNet(nn.Module):
    """A recurrent layer stack reading a window, then a linear head on the last hidden state."""

    def __init__(self, kind: str, hidden: int, layers: int, out: int) -> None:
        super().__init__()
        self.rnn = CELLS[kind](input_size=1, hidden_size=hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq, _ = self.rnn(x)  # [batch, lookback, 1] -> [batch, lookback, hidden]
        last = seq[:, -1, :]  # [batch, lookback, hidden] -> [batch, hidden]
        out: torch.Tensor = self.head(last)  # [batch, hidden] -> [batch, out]
        return out


class RecurrentForecaster:
    """Fit a recurrent network to one series and forecast it.

    Args:
        config: the model settings (kind, lookback, scaling, head, training).
    """

    def __init__(self, config: ModelConfig) -> None:
        self.config = config

    @property
    def out_steps(self) -> int:
        return self.config.horizon if self.config.head == "direct" else 1

    #: Shortest lookback a short series may fall back to: half a season.
    MIN_LOOKBACK = 6
    #: Windows a fit needs at the least.
    MIN_WINDOWS = 6

    @property
    def _extra_history(self) -> int:
        cfg = self.config
        return history_needed(0, cfg.scaling == "log_window", cfg.target == "seasonal")

    def min_length(self) -> int:
        """Shortest series this configuration can fit (enough windows to train and validate)."""
        shortest = min(self.config.lookback, self.MIN_LOOKBACK)
        return shortest + self._extra_history + self.out_steps + self.MIN_WINDOWS

    def _lookback_for(self, n: int) -> int:
        """The configured lookback, shortened (not below half a season) when the series is too short for it."""
        room = n - self._extra_history - self.out_steps - self.MIN_WINDOWS
        return max(min(self.config.lookback, room), self.MIN_LOOKBACK)

    def fit(self, values: np.ndarray, curve: bool = True) -> RecurrentForecaster:
        """Fit scaler and network on `values` (a 1-D array, oldest first), one network at a time.

        This is the reference path; `fit_many` fits many series as one computation with the same result.

        Args:
            curve: record the validation-loss curve (see `train_network`); forecasts are the same.
        """
        jobs = self._prepare(values)
        members = [train_network(self._build, job.X, job.Y, job.config, curve=curve) for job in jobs]
        return self._set_members(members)

    @classmethod
    def fit_many(
        cls, config: ModelConfig, series: Sequence[np.ndarray], curve: bool = True, batched: bool = True
    ) -> list[RecurrentForecaster]:
        """Fit one forecaster per series. With `batched` (where stacking is the faster way: `batched.pays_off`),
        all their networks (every series, every ensemble seed) train as stacked computations
        (`seqcast.batched`), equal to `fit` on each up to rounding; otherwise one by one."""
        if not (batched and len(series) > 1 and pays_off(config)):
            return [cls(config).fit(y, curve=curve) for y in series]
        return cls.fit_stacked(config, series, curve)

    @classmethod
    def fit_stacked(
        cls, config: ModelConfig, series: Sequence[np.ndarray], curve: bool = True
    ) -> list[RecurrentForecaster]:
        """Fit one forecaster per series, all their networks (every series, every ensemble seed) trained as
        stacked computations (`seqcast.batched`): equal to `fit` on each, up to rounding."""
        models = [cls(config) for _ in series]
        jobs = [model._prepare(values) for model, values in zip(models, series, strict=True)]
        flat = [job for series_jobs in jobs for job in series_jobs]
        results = iter(train_many(lambda c: cls(c)._build(), flat, curve=curve))
        return [
            model._set_members([next(results) for _ in series_jobs])
            for model, series_jobs in zip(models, jobs, strict=True)
        ]

    def _prepare(self, values: np.ndarray) -> list[Job]:
        """Fit the scaler and window the series; one training job per ensemble seed."""
        y = np.array(values, dtype=np.float64)  # a copy: inputs are never mutated
        if len(y) < self.min_length():
            raise ValueError(f"series too short: {len(y)} values, {self.min_length()} needed")
        cfg = self.config
        self.y_ = y
        self.scaler_ = fit_scaler(y, cfg.scaling)
        z = self.scaler_.transform(y)
        self.lookback_ = min(cfg.lookback, self._lookback_for(len(y)))
        X, Y = make_windows(z, self.lookback_, self.out_steps, self.scaler_.centred, cfg.target == "seasonal")
        # An ensemble is the same network from `ensemble` seeds; its forecast is their mean.
        return [Job(X, Y, cfg.model_copy(update={"seed": cfg.seed + i})) for i in range(cfg.ensemble)]

    def _set_members(self, members: list[TrainResult]) -> RecurrentForecaster:
        self.nets_ = [m.net for m in members]
        self.history_ = members[0].history
        self.epochs_ = members[0].epochs
        self.train_seconds_ = sum(m.seconds for m in members)
        return self

    def _build(self) -> RecurrentNet:
        cfg = self.config
        return RecurrentNet(cfg.kind, cfg.hidden, cfg.layers, self.out_steps)

    def predict(self, h: int, history: np.ndarray | None = None) -> np.ndarray:
        """Forecast `h` steps after the end of `history` (default: the fitted series)."""
        self._check_fitted()
        y = self.y_ if history is None else np.asarray(history, dtype=np.float64)
        z = list(self.scaler_.transform(y))
        lookback = self.lookback_
        out: list[float] = []
        with torch.no_grad():
            while len(out) < h:
                window, anchor = last_window(
                    np.asarray(z), lookback, self.scaler_.centred, self.out_steps, self.config.target == "seasonal"
                )
                x = torch.from_numpy(window)
                outputs = [net(x)[0].double().numpy() for net in self.nets_]  # each [out]
                step = np.mean(outputs, axis=0) + anchor
                z.extend(step.tolist())
                out.extend(step.tolist())
        return self.scaler_.inverse(np.asarray(out[:h]))

    def _check_fitted(self) -> None:
        if not hasattr(self, "nets_"):
            raise RuntimeError("RecurrentForecaster is not fitted: call fit() first")

    # ---------------------------------------------------------------- state (see seqcast.artifacts)

    def to_state(self) -> dict[str, Any]:
        """Fitted state as tensors and plain values only, loadable with `torch.load(weights_only=True)`."""
        self._check_fitted()
        return {
            "kind": self.config.kind,
            "config": json.dumps(self.config.model_dump(mode="json"), sort_keys=True),
            "state_dicts": [net.state_dict() for net in self.nets_],
            "scaler": self.scaler_.to_dict(),
            "y": torch.from_numpy(self.y_.copy()),
            "history": [list(map(float_or_none, row)) for row in self.history_],
            "epochs": int(self.epochs_),
            "lookback": int(self.lookback_),
            "train_seconds": float(self.train_seconds_),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RecurrentForecaster:
        model = cls(ModelConfig(**json.loads(state["config"])))
        model.nets_ = []
        for weights in state["state_dicts"]:
            net = model._build()
            net.load_state_dict(weights)
            net.eval()
            model.nets_.append(net)
        model.scaler_ = Scaler.from_dict(state["scaler"])
        model.y_ = state["y"].numpy().astype(np.float64)
        model.history_ = [tuple(row) for row in state["history"]]
        model.epochs_ = int(state["epochs"])
        model.lookback_ = int(state["lookback"])
        model.train_seconds_ = float(state["train_seconds"])
        return model


def float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)
