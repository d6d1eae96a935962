"""One recurrent network across all series (the kinds `global_rnn`, `global_lstm`, `global_gru`): cross-learning,
the way deep models won the M4 competition.

Each series is brought to a common shape before the network sees it (the hybrid normalisation of ES-RNN, with
classical pieces): values on a log scale (a plain rescaling where a series is not positive), the seasonal pattern
of its last six years taken out by classical decomposition where a seasonality test finds one, and every window
measured from its own
level (the mean of its last 12 inputs). The network reads up to `lookback` such months (shorter histories are
padded and masked), forecasts the next `horizon` of them at once, and the seasonal pattern and level are put
back. It trains on windows drawn from every series with equal weight per series, for a fixed number of steps:
its cost does not grow with the number of series, and a series it never saw can be forecast from its history.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from seqcast.config import ModelConfig
from seqcast.models import GLOBAL_PREFIX
from seqcast.models.recurrent import CELLS
from seqcast.models.statistical import HISTORY
from seqcast.records import History
from seqcast.train import deterministic, seeded_build

SEASON = 12
#: Months of history a series needs to be forecast (and a training window needs before its targets).
MIN_INPUTS = 12
#: A series is deseasonalised when its lag-12 autocorrelation is beyond this many standard errors (Bartlett's).
#: One, not the 1.645 of the Theta method's 90% test: the network forecasts a weakly seasonal series better with
#: its pattern taken out (network alone on M1, 5 seeds: 0.985 x AutoETS against 1.005; see benchmarks/README.md).
SEASONALITY_Z = 1.0
#: The seasonal pattern is measured on a series' most recent months only, the window the statistical models are
#: fitted on: a pattern drifts over the years, and one averaged over decades is not the one the forecast months
#: will have. Network alone, 2 seeds: development series 0.90x AutoETS against 1.09x with the whole history, M1
#: (mostly shorter series) 0.977x against 0.981x (`benchmarks/network.py`, 5 seeds: 0.980x against 0.984x, each
#: seed better); 48 to 120 months and a pattern drifting over time were measured too (see benchmarks/README.md).
PATTERN_MONTHS = HISTORY


def seasonal_pattern(z: np.ndarray, season: int = SEASON) -> np.ndarray:
    """The seasonal pattern of a transformed series by position (`pattern[i % season]`), zero where the series
    is shorter than two seasons or shows no seasonality (its lag-`season` autocorrelation is within
    `SEASONALITY_Z` standard errors of zero)."""
    n = len(z)
    if n < 2 * season:
        return np.zeros(season)
    x = z - z.mean()
    denominator = float(np.sum(x * x))
    if denominator <= 0:
        return np.zeros(season)
    acf = np.array([np.sum(x[k:] * x[: n - k]) / denominator for k in range(1, season + 1)])
    limit = SEASONALITY_Z * np.sqrt((1 + 2 * np.sum(acf[:-1] ** 2)) / n)
    if not abs(acf[-1]) > limit:
        return np.zeros(season)
    # Centred 2 x season moving average; the detrended values averaged by position in the season.
    trend = np.convolve(z, np.r_[0.5, np.ones(season - 1), 0.5] / season, mode="valid")
    detrended = z[season // 2 : season // 2 + len(trend)] - trend
    position = (np.arange(len(detrended)) + season // 2) % season
    pattern = np.array([detrended[position == p].mean() for p in range(season)])
    centred: np.ndarray = pattern - pattern.mean()
    return centred


def recent_pattern(z: np.ndarray, months: int = PATTERN_MONTHS) -> np.ndarray:
    """The seasonal pattern of the last `months` of `z`, by position in `z` (`pattern[i % SEASON]`)."""
    start = max(0, len(z) - months)
    return np.roll(seasonal_pattern(z[start:]), start % SEASON)


@dataclass(frozen=True)
class Shape:
    """How one series is normalised: log or rescaled, its seasonal pattern (fit on what the model saw only)."""

    log: bool
    scale: float
    pattern: np.ndarray

    @classmethod
    def of(cls, y: np.ndarray) -> Shape:
        log = bool(np.all(y > 0))
        scale = 1.0 if log else float(np.mean(np.abs(y))) or 1.0
        z = np.log(y) if log else y / scale
        return cls(log, scale, recent_pattern(z))

    def transform(self, y: np.ndarray) -> np.ndarray:
        """Seasonally adjusted, on the model's scale (index i of the series at position i % SEASON)."""
        z = np.log(y) if self.log else y / self.scale
        adjusted: np.ndarray = z - self.pattern[np.arange(len(y)) % SEASON]
        return adjusted

    def inverse(self, d: np.ndarray, start: int) -> np.ndarray:
        """Values of months `start`, `start + 1`, ... from their adjusted, transformed forecasts."""
        z = d + self.pattern[(start + np.arange(len(d))) % SEASON]
        values: np.ndarray = np.exp(z) if self.log else z * self.scale
        return values


def _inputs(d: np.ndarray, lookback: int) -> tuple[np.ndarray, float]:
    """The network's input for history `d` (adjusted): [lookback, 2] (value from the level, mask) and the level."""
    recent = d[-lookback:]
    level = float(np.mean(recent[-SEASON:]))
    x = np.zeros((lookback, 2), np.float32)
    x[lookback - len(recent) :, 0] = recent - level
    x[lookback - len(recent) :, 1] = 1.0
    return x, level


def windows(series: Sequence[np.ndarray], lookback: int, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training windows of every series: X [N, lookback, 2], Y [N, horizon] (from each window's level) and the
    index of the series each came from [N]."""
    xs, ys, owners = [], [], []
    for i, y in enumerate(series):
        d = Shape.of(y).transform(np.asarray(y, dtype=np.float64))
        ends = np.arange(MIN_INPUTS - 1, len(d) - horizon)
        if len(ends) == 0:
            continue
        padded = np.r_[np.full(lookback - 1, np.nan), d]  # so that every end has `lookback` inputs, some missing
        inputs = sliding_window_view(padded, lookback)[ends]  # [n, lookback]
        level = np.mean(inputs[:, -SEASON:], axis=1)
        mask = ~np.isnan(inputs)
        x = np.zeros((len(ends), lookback, 2), np.float32)
        x[:, :, 0] = np.where(mask, inputs - level[:, None], 0.0)
        x[:, :, 1] = mask
        targets = sliding_window_view(d, horizon)[ends + 1] - level[:, None]
        xs.append(x)
        ys.append(targets.astype(np.float32))
        owners.append(np.full(len(ends), i))
    if not xs:
        return np.empty((0, lookback, 2), np.float32), np.empty((0, horizon), np.float32), np.empty(0, np.int64)
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(owners)


class GlobalNet(nn.Module):
    """A recurrent layer stack over the (value, mask) inputs, a linear head on the last hidden state."""

    def __init__(self, kind: str, hidden: int, layers: int, horizon: int) -> None:
        super().__init__()
        self.rnn = CELLS[kind](input_size=2, hidden_size=hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq, _ = self.rnn(x)  # [batch, lookback, 2] -> [batch, lookback, hidden]
        out: torch.Tensor = self.head(seq[:, -1, :])  # [batch, hidden] -> [batch, horizon]
        return out


class GlobalForecaster:
    """Fit one network (an ensemble of `config.ensemble` seeds) on the windows of many series; forecast any.

    Args:
        config: the network settings (kind, lookback, hidden, layers, lr, ensemble, seed); its `horizon` is how
            many months the network forecasts at once (longer forecasts are fed back on themselves).
        steps: Adam steps on mini-batches of `batch_size` windows.
    """

    #: Points of the loss curve kept (the mean training loss over each stretch of steps).
    CURVE_POINTS = 50

    def __init__(self, config: ModelConfig, steps: int = 1500, batch_size: int = 256) -> None:
        self.config = config
        self.steps = steps
        self.batch_size = batch_size

    def min_length(self) -> int:
        """Shortest series the network forecasts."""
        return MIN_INPUTS

    def fit(self, series: Sequence[np.ndarray]) -> GlobalForecaster:
        """Train on the windows of every series (1-D arrays, oldest first); series too short add none."""
        cfg = self.config
        X, Y, owners = windows([np.asarray(y, dtype=np.float64) for y in series], cfg.lookback, cfg.horizon)
        if len(X) == 0:
            raise ValueError(f"no series is long enough for a window ({MIN_INPUTS + cfg.horizon} months)")
        start = time.perf_counter()
        self.nets_ = [self._train(X, Y, owners, cfg.seed + m) for m in range(cfg.ensemble)]
        self.train_seconds_ = time.perf_counter() - start
        self.n_series_ = len(np.unique(owners))
        self.n_windows_ = len(X)
        return self

    def fit_member(
        self, series: Sequence[np.ndarray], member: int
    ) -> tuple[dict[str, torch.Tensor], History, int, int]:
        """Train one member of the ensemble alone (so members can train in different processes).

        Returns its weights, its loss curve, and how many series and windows it trained on.
        """
        cfg = self.config
        X, Y, owners = windows([np.asarray(y, dtype=np.float64) for y in series], cfg.lookback, cfg.horizon)
        if len(X) == 0:
            raise ValueError(f"no series is long enough for a window ({MIN_INPUTS + cfg.horizon} months)")
        net, curve = self._train_member(X, Y, owners, cfg.seed + member)
        return net.state_dict(), curve, len(np.unique(owners)), len(X)

    def _train(self, X: np.ndarray, Y: np.ndarray, owners: np.ndarray, seed: int) -> nn.Module:
        net, curve = self._train_member(X, Y, owners, seed)
        if seed == self.config.seed:
            self.history_: History = curve
        return net

    def _train_member(self, X: np.ndarray, Y: np.ndarray, owners: np.ndarray, seed: int) -> tuple[nn.Module, History]:
        cfg = self.config
        with deterministic():
            net = seeded_build(lambda: GlobalNet(cfg.kind, cfg.hidden, cfg.layers, cfg.horizon), seed)
            optimiser = torch.optim.Adam(net.parameters(), lr=cfg.lr)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, self.steps)
            generator = torch.Generator().manual_seed(seed)
            # Every series weighs the same, however many windows it has.
            weight = torch.from_numpy(1.0 / np.bincount(owners)[owners])
            Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
            every = max(1, self.steps // self.CURVE_POINTS)
            curve: list[tuple[int, float, float | None]] = []
            running = 0.0
            net.train()
            for step in range(1, self.steps + 1):
                idx = torch.multinomial(weight, self.batch_size, replacement=True, generator=generator)
                optimiser.zero_grad()
                loss = (net(Xt[idx]) - Yt[idx]).abs().mean()  # MAE on the log scale: relative errors
                loss.backward()
                optimiser.step()
                schedule.step()
                running += float(loss.detach())
                if step % every == 0:
                    curve.append((len(curve) + 1, running / every, None))
                    running = 0.0
            net.eval()
        return net, tuple(curve)

    def set_members(self, states: Sequence[dict[str, torch.Tensor]], history: History, seconds: float,
                    n_series: int, n_windows: int) -> GlobalForecaster:  # fmt: skip
        cfg = self.config
        self.nets_ = []
        for weights in states:
            net = GlobalNet(cfg.kind, cfg.hidden, cfg.layers, cfg.horizon)
            net.load_state_dict(weights)
            net.eval()
            self.nets_.append(net)
        self.history_ = tuple(history)
        self.train_seconds_ = seconds
        self.n_series_ = n_series
        self.n_windows_ = n_windows
        return self

    def predict(self, values: np.ndarray, h: int) -> np.ndarray:
        """Forecast `h` months after the end of `values` (a series the model may or may not have seen)."""
        forecast: np.ndarray = self.predict_many([values], h)[0]
        return forecast

    def predict_many(self, series: Sequence[np.ndarray], h: int) -> np.ndarray:
        """Forecasts [len(series), h], the members' median (their mean with two).

        Each series goes through the network on its own: a batch would sum in another order, and a series'
        forecast must not depend on which others were forecast beside it.
        """
        if not hasattr(self, "nets_"):
            raise RuntimeError("GlobalForecaster is not fitted: call fit() first")
        out = []
        for values in series:
            y = np.asarray(values, dtype=np.float64)
            if len(y) < MIN_INPUTS:
                raise ValueError(f"series too short for the global model: {len(y)} values, {MIN_INPUTS} needed")
            shape = Shape.of(y)
            history = shape.transform(y)
            forecast = np.empty(0)
            while len(forecast) < h:
                x, level = _inputs(history, self.config.lookback)
                with torch.no_grad():
                    members = np.stack([net(torch.from_numpy(x[None]))[0].double().numpy() for net in self.nets_])
                step = np.median(members, axis=0) + level  # [members, horizon] -> [horizon]
                history, forecast = np.r_[history, step], np.r_[forecast, step]
            out.append(shape.inverse(forecast[:h], len(y)))
        return np.stack(out)

    # ---------------------------------------------------------------- state (see seqcast.artifacts)

    def to_state(self) -> dict[str, Any]:
        """Fitted state as tensors and plain values only, loadable with `torch.load(weights_only=True)`."""
        return {
            "kind": f"{GLOBAL_PREFIX}{self.config.kind}",
            "global": True,
            "config": json.dumps(self.config.model_dump(mode="json"), sort_keys=True),
            "steps": int(self.steps),
            "batch_size": int(self.batch_size),
            "state_dicts": [net.state_dict() for net in self.nets_],
            "history": [[int(e), float(t), None] for e, t, _ in self.history_],
            "train_seconds": float(self.train_seconds_),
            "n_series": int(self.n_series_),
            "n_windows": int(self.n_windows_),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> GlobalForecaster:
        model = cls(ModelConfig(**json.loads(state["config"])), int(state["steps"]), int(state["batch_size"]))
        history = tuple((int(e), float(t), None) for e, t, _ in state["history"])
        return model.set_members(
            state["state_dicts"],
            history,
            float(state["train_seconds"]),
            int(state["n_series"]),
            int(state["n_windows"]),
        )
