"""A deterministic stand-in for a network (statsforecast's `SumAhead` idea), for orchestration tests.

It fits in microseconds and forecasts last year plus the mean year-over-year change, yet behaves like a stored
kind in every other way: its state is saved as an artifact, reused when data and settings repeat, verified on
load, scored and published. Tests of caching, chunking and publishing use it instead of a network's numerics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import torch

from seqcast.config import ModelConfig
from seqcast.evaluate import SEASON
from seqcast.records import History

#: A loss curve like a network's (train and validation loss falling), so charts and history rows are exercised.
CURVE: History = ((1, 1.0, 1.2), (2, 0.5, 0.7), (3, 0.25, 0.5))


class FakeForecaster:
    def __init__(self, config: ModelConfig) -> None:
        self.config = config

    def min_length(self) -> int:
        return 2 * SEASON

    def fit(self, values: np.ndarray, curve: bool = True) -> Self:
        y = np.array(values, dtype=np.float64)
        if len(y) < self.min_length():
            raise ValueError(f"series too short: {len(y)} values, {self.min_length()} needed")
        self.y_ = y
        self.drift_ = float(np.mean(y[-SEASON:] - y[-2 * SEASON : -SEASON]))
        self.history_: History = CURVE
        self.epochs_ = len(CURVE)
        self.train_seconds_ = 0.0
        return self

    @classmethod
    def fit_many(cls, config: ModelConfig, series: Sequence[np.ndarray], curve: bool, batched: bool) -> list[Self]:
        return [cls(config).fit(y) for y in series]

    def predict(self, h: int, history: np.ndarray | None = None) -> np.ndarray:
        y = self.y_ if history is None else np.asarray(history, dtype=np.float64)
        steps = np.arange(h)
        return y[-SEASON:][steps % SEASON] + self.drift_ * (1 + steps // SEASON)

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": "fake",
            "config": self.config.model_dump_json(),
            "y": torch.from_numpy(self.y_.copy()),
            "drift": self.drift_,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        model = cls(ModelConfig.model_validate_json(state["config"]))
        model.y_ = state["y"].numpy().astype(np.float64)
        model.drift_ = float(state["drift"])
        model.history_ = CURVE
        model.epochs_ = len(CURVE)
        model.train_seconds_ = 0.0
        return model
