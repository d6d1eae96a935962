"""One network across all series (the kinds `global_rnn`, `global_lstm`, `global_gru`), as the deep-learning
forecasting libraries train them.

Each series keeps its own scaler (fit on its own training part), so series of any level and unit share
one network: the windows of every series are pooled and the network is trained on mini-batches drawn
from the pool with a seeded generator, for a fixed number of steps (the cost does not grow with the
number of series). Forecasting a series needs only the network and that series' own history.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from seqcast.config import ModelConfig
from seqcast.models import GLOBAL_PREFIX
from seqcast.models.recurrent import RecurrentNet
from seqcast.records import History
from seqcast.train import deterministic, seeded_build
from seqcast.windows import fit_scaler, history_needed, last_window, make_windows


class GlobalForecaster:
    """Fit one recurrent network on the pooled windows of many series; forecast any of them.

    Args:
        config: the network settings (kind, lookback, scaling, head, lr, ensemble seeds); `epochs` is unused.
        steps: Adam steps on mini-batches of `batch_size` windows.
    """

    #: Points of the loss curve kept (the mean training loss over each stretch of steps).
    CURVE_POINTS = 50

    def __init__(self, config: ModelConfig, steps: int = 1500, batch_size: int = 256) -> None:
        self.config = config
        self.steps = steps
        self.batch_size = batch_size

    @property
    def out_steps(self) -> int:
        return self.config.horizon if self.config.head == "direct" else 1

    @property
    def _seasonal(self) -> bool:
        return self.config.target == "seasonal"

    def min_length(self) -> int:
        """Shortest series that gives the network at least one window (shorter ones are not forecast)."""
        cfg = self.config
        return history_needed(cfg.lookback, cfg.scaling == "log_window", self._seasonal) + self.out_steps

    def _windows(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        scaler = fit_scaler(values, cfg.scaling)
        return make_windows(scaler.transform(values), cfg.lookback, self.out_steps, scaler.centred, self._seasonal)

    def fit(self, series: list[np.ndarray]) -> GlobalForecaster:
        """Train on every series long enough for a window (1-D arrays, oldest first)."""
        usable = [np.asarray(y, dtype=np.float64) for y in series if len(y) >= self.min_length()]
        if not usable:
            raise ValueError(f"no series has the {self.min_length()} values a global model needs")
        pairs = [self._windows(y) for y in usable]
        X = torch.from_numpy(np.concatenate([x for x, _ in pairs]))
        Y = torch.from_numpy(np.concatenate([y for _, y in pairs]))
        start = time.perf_counter()
        cfg = self.config
        self.nets_: list[nn.Module] = []
        self.history_: History = ()
        with deterministic():
            for member in range(cfg.ensemble):
                net, curve = self._train(X, Y, cfg.seed + member)
                self.nets_.append(net)
                if member == 0:
                    self.history_ = curve
        self.train_seconds_ = time.perf_counter() - start
        self.n_series_ = len(usable)
        self.n_windows_ = len(X)
        return self

    def _train(self, X: torch.Tensor, Y: torch.Tensor, seed: int) -> tuple[nn.Module, History]:
        cfg = self.config
        net = seeded_build(lambda: RecurrentNet(cfg.kind, cfg.hidden, cfg.layers, self.out_steps), seed)
        optimiser = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        loss_fn = nn.MSELoss()
        generator = torch.Generator().manual_seed(seed)
        batch = min(self.batch_size, len(X))
        every = max(1, self.steps // self.CURVE_POINTS)
        curve: list[tuple[int, float, float | None]] = []
        running = 0.0
        net.train()
        for step in range(1, self.steps + 1):
            idx = torch.randint(len(X), (batch,), generator=generator)
            optimiser.zero_grad()
            loss = loss_fn(net(X[idx]), Y[idx])
            loss.backward()
            optimiser.step()
            running += float(loss.detach())
            if step % every == 0:
                curve.append((len(curve) + 1, running / every, None))
                running = 0.0
        net.eval()
        return net, tuple(curve)

    def predict(self, values: np.ndarray, h: int) -> np.ndarray:
        """Forecast `h` months after the end of `values` (a series the model may or may not have seen)."""
        if not hasattr(self, "nets_"):
            raise RuntimeError("GlobalForecaster is not fitted: call fit() first")
        cfg = self.config
        y = np.asarray(values, dtype=np.float64)
        if len(y) < self.min_length():
            raise ValueError(f"series too short for the global model: {len(y)} values, {self.min_length()} needed")
        scaler = fit_scaler(y, cfg.scaling)
        z = list(scaler.transform(y))
        out: list[float] = []
        with torch.no_grad():
            while len(out) < h:
                window, anchor = last_window(
                    np.asarray(z), cfg.lookback, scaler.centred, self.out_steps, self._seasonal
                )
                x = torch.from_numpy(window)
                step = np.mean([net(x)[0].double().numpy() for net in self.nets_], axis=0) + anchor
                z.extend(step.tolist())
                out.extend(step.tolist())
        return scaler.inverse(np.asarray(out[:h]))

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
        cfg = model.config
        model.nets_ = []
        for weights in state["state_dicts"]:
            net = RecurrentNet(cfg.kind, cfg.hidden, cfg.layers, model.out_steps)
            net.load_state_dict(weights)
            net.eval()
            model.nets_.append(net)
        model.history_ = tuple((int(e), float(t), None) for e, t, _ in state["history"])
        model.train_seconds_ = float(state["train_seconds"])
        model.n_series_ = int(state["n_series"])
        model.n_windows_ = int(state["n_windows"])
        return model
