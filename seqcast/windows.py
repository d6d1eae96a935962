"""Scaling and lookback windows. Scalers are fit on the training part only and are plain numbers."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Scaler:
    """Maps values to the network's scale and back.

    "minmax": the tutorial's (y - lo) / (hi - lo) with lo, hi from the training part; windows are used as-is.
    "log_window": log where the training part is positive (so growth is additive and forecasts stay
    positive), divided by the typical month-to-month change; each window is then centred on its last
    value, which lets the network forecast levels it never saw in training.
    """

    kind: str
    log: bool = False
    lo: float = 0.0
    hi: float = 1.0
    scale: float = 1.0

    @property
    def centred(self) -> bool:
        return self.kind == "log_window"

    def transform(self, values: np.ndarray) -> np.ndarray:
        y = np.asarray(values, dtype=np.float64)
        if self.kind == "minmax":
            return (y - self.lo) / (self.hi - self.lo)
        if self.log:
            y = np.log(np.maximum(y, 1e-12))
        return y / self.scale

    def inverse(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64)
        if self.kind == "minmax":
            return z * (self.hi - self.lo) + self.lo
        y = z * self.scale
        return np.exp(y) if self.log else y

    def to_dict(self) -> dict[str, float | str | bool]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scaler:
        return cls(
            kind=str(data["kind"]),
            log=bool(data["log"]),
            lo=float(data["lo"]),
            hi=float(data["hi"]),
            scale=float(data["scale"]),
        )


def fit_scaler(train: np.ndarray, kind: str) -> Scaler:
    """Fit a scaler on the training values only (never on what it will be asked to forecast)."""
    y = np.asarray(train, dtype=np.float64)
    if kind == "minmax":
        lo, hi = float(y.min()), float(y.max())
        return Scaler(kind, lo=lo, hi=hi if hi > lo else lo + 1.0)
    if kind != "log_window":
        raise ValueError(f"unknown scaling {kind!r}")
    use_log = bool(np.all(y > 0))
    z = np.log(y) if use_log else y
    step = np.abs(np.diff(z))
    scale = float(np.mean(step)) if len(step) else 0.0
    if not np.isfinite(scale) or scale <= 0:
        scale = float(np.mean(np.abs(z))) or 1.0
    return Scaler(kind, log=use_log, scale=scale)


SEASON = 12


def target_anchor(z: np.ndarray, ends: np.ndarray, out: int, seasonal: bool) -> np.ndarray:
    """What each target is measured from, for windows whose last input is at index `ends`.

    Last value: z[end] for every step. Seasonal: the value one season before each target month, as the
    seasonal-naive forecast would predict it, so the network learns a correction to that forecast.

    Returns:
        [len(ends), out]
    """
    if not seasonal:
        return np.repeat(z[ends][:, None], out, axis=1)
    offsets = (np.arange(out) % SEASON) - (SEASON - 1)  # step k -> end - 11 + (k - 1) % 12
    return z[ends[:, None] + offsets[None, :]]


def make_windows(
    z: np.ndarray, lookback: int, out: int, centred: bool, seasonal: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Sliding windows over a scaled series.

    Returns:
        X: [n_windows, lookback, 1] inputs; Y: [n_windows, out] the next `out` values.
        With `centred`, inputs are relative to each window's last value and targets relative to it too.
        With `seasonal` (and `centred`), inputs are year-over-year changes (z[i] - z[i-12]) and targets
        are relative to the same month a season earlier (`target_anchor`): the network forecasts how the
        coming year differs from the last one, the seasonal-naive forecast being its zero.
    """
    z = np.asarray(z, dtype=np.float64)
    first = SEASON if (centred and seasonal) else 0  # seasonal inputs need a season of history
    n = len(z) - first - lookback - out + 1
    if n <= 0:
        return np.empty((0, lookback, 1), dtype=np.float32), np.empty((0, out), dtype=np.float32)
    idx = first + np.arange(n)[:, None]
    X = z[idx + np.arange(lookback)]  # [n, lookback]
    Y = z[idx + lookback + np.arange(out)]  # [n, out]
    if centred:
        ends = idx[:, 0] + lookback - 1
        base = z[idx + np.arange(lookback) - SEASON] if seasonal else z[ends][:, None]
        X = X - base
        Y = Y - target_anchor(z, ends, out, seasonal)
    return X[:, :, None].astype(np.float32), Y.astype(np.float32)


def history_needed(lookback: int, centred: bool, seasonal: bool) -> int:
    """Values a forecast needs before its origin."""
    return lookback + (SEASON if (centred and seasonal) else 0)


def last_window(
    z: np.ndarray, lookback: int, centred: bool, out: int = 1, seasonal: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The input window ending at the last value, and the anchors of the `out` steps that follow.

    Returns:
        ([1, lookback, 1] window, [out] anchors to add to the network's output).
    """
    z = np.asarray(z, dtype=np.float64)
    window = z[-lookback:]
    if not centred:
        return window[None, :, None].astype(np.float32), np.zeros(out)
    end = np.array([len(z) - 1])
    base = z[len(z) - lookback - SEASON : len(z) - SEASON] if seasonal else z[-1]
    window = window - base
    return window[None, :, None].astype(np.float32), target_anchor(z, end, out, seasonal)[0]
