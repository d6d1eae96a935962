"""Baselines: kinds every series is scored with, the floor a network must beat to be published."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np

from seqcast.config import ModelConfig
from seqcast.evaluate import SEASON, seasonal_naive
from seqcast.records import History


class SeasonalNaive:
    """Each month forecast as the same month a year before (the last value, with less than a year)."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config

    def min_length(self) -> int:
        return SEASON  # shorter, it would only repeat the last value: that is `naive`

    def fit(self, values: np.ndarray, curve: bool = True) -> Self:
        self.y_ = np.array(values, dtype=np.float64)
        self.history_: History = ()
        self.epochs_ = 0
        self.train_seconds_ = 0.0
        return self

    @classmethod
    def fit_many(cls, config: ModelConfig, series: Sequence[np.ndarray], curve: bool, batched: bool) -> list[Self]:
        return [cls(config).fit(y) for y in series]

    def predict(self, h: int, history: np.ndarray | None = None) -> np.ndarray:
        return seasonal_naive(self.y_ if history is None else np.asarray(history, dtype=np.float64), h, SEASON)

    def to_state(self) -> dict[str, Any]:
        return {"kind": "seasonal_naive", "config": self.config.model_dump_json(), "y": self.y_.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        return cls(ModelConfig.model_validate_json(state["config"])).fit(np.asarray(state["y"], dtype=np.float64))


class Naive(SeasonalNaive):
    """Every month forecast as the last value: what a series shorter than a season gets."""

    def min_length(self) -> int:
        return 1

    def predict(self, h: int, history: np.ndarray | None = None) -> np.ndarray:
        y = self.y_ if history is None else np.asarray(history, dtype=np.float64)
        return np.full(h, y[-1])

    def to_state(self) -> dict[str, Any]:
        return {**super().to_state(), "kind": "naive"}
