"""Seeded, deterministic training of one network: Adam, MSE, full batch, validation on the latest windows."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from seqcast.config import ModelConfig


@dataclass
class TrainResult:
    net: nn.Module
    #: (epoch, train_loss, val_loss or None), one per epoch of the validated phase.
    history: list[tuple[int, float, float | None]]
    #: Epochs the returned network was trained for.
    epochs: int
    seconds: float


# torch's default generator is process-wide: concurrent trainings (threads of a task runner) must not
# interleave seeding and drawing, or the same seed would give different weights.
_RNG_LOCK = threading.Lock()


def seeded_build(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Construct a network with weights drawn from `seed`, without touching the caller's RNG state."""
    with _RNG_LOCK, torch.random.fork_rng(devices=[]):
        # The CPU generator only: `torch.manual_seed` would also queue lazy seeding of every accelerator
        # backend (formatting a stack trace each time), which costs more than building a small network.
        torch.default_generator.manual_seed(seed)
        return build()


@contextmanager
def deterministic() -> Iterator[None]:
    """Deterministic algorithms on one intra-op thread for the duration.

    Tiny networks train fastest on one thread; parallelism is across series, not inside one.
    Full-batch training draws no random numbers, so only construction needs the seed.
    """
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def split_windows(n: int, val_fraction: float, gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Time-ordered split of `n` windows: the last share validates.

    `gap` windows before the validation block are dropped, so no training target overlaps a
    validation target (with a 12-month direct head, neighbouring windows share 11 targets).
    """
    n_val = round(n * val_fraction) if val_fraction > 0 else 0
    if n_val == 0 or n - n_val - gap < 4:
        return np.arange(n), np.arange(0)
    return np.arange(n - n_val - gap), np.arange(n - n_val, n)


def _fit(
    build: Callable[[], nn.Module],
    X: torch.Tensor,
    Y: torch.Tensor,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    cfg: ModelConfig,
    epochs: int,
    patience: int | None,
) -> tuple[nn.Module, list[tuple[int, float, float | None]], int]:
    net = seeded_build(build, cfg.seed)
    optimiser = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    loss_fn = nn.MSELoss()
    xt, yt = X[train_idx], Y[train_idx]
    xv, yv = (X[val_idx], Y[val_idx]) if len(val_idx) else (None, None)
    history: list[tuple[int, float, float | None]] = []
    best_loss, best_epoch, best_state = float("inf"), epochs, None
    for epoch in range(1, epochs + 1):
        net.train()
        optimiser.zero_grad()
        loss = loss_fn(net(xt), yt)
        loss.backward()
        optimiser.step()
        val_loss = None
        if xv is not None:
            net.eval()
            with torch.no_grad():
                val_loss = float(loss_fn(net(xv), yv))
            if val_loss < best_loss:
                best_loss, best_epoch = val_loss, epoch
                if patience is not None:
                    best_state = copy.deepcopy(net.state_dict())
            elif patience is not None and epoch - best_epoch >= patience:
                history.append((epoch, float(loss.detach()), val_loss))
                break
        history.append((epoch, float(loss.detach()), val_loss))
    if best_state is not None:
        net.load_state_dict(best_state)
    else:
        best_epoch = len(history)
    return net, history, best_epoch


def train_network(
    build: Callable[[], nn.Module], X: np.ndarray, Y: np.ndarray, cfg: ModelConfig, curve: bool = True
) -> TrainResult:
    """Train a fresh network from `build()` on windows X [n, lookback, 1] -> Y [n, out].

    The latest `val_fraction` of windows gives the validation loss (and, with `patience`, early
    stopping on it). With `refit_all_windows`, a fresh network is then trained on every window for
    the best epoch count, so the most recent months also shape the published model.

    Args:
        curve: record the validation curve. Without early stopping that held-out phase only draws the
            curve (the refit trains the same seeded network for the same epochs either way), so a fit
            whose curve nobody looks at (a holdout or backtest fit) can skip it: same forecast, half the work.
    """
    start = time.perf_counter()
    with deterministic():
        Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
        gap = Y.shape[1] - 1
        skip_curve = not curve and cfg.patience is None and cfg.refit_all_windows
        train_idx, val_idx = split_windows(len(X), 0.0 if skip_curve else cfg.val_fraction, gap)
        net, history, best_epoch = _fit(build, Xt, Yt, train_idx, val_idx, cfg, cfg.epochs, cfg.patience)
        epochs = best_epoch
        if cfg.refit_all_windows and len(val_idx):
            net, _, _ = _fit(build, Xt, Yt, np.arange(len(X)), np.arange(0), cfg, best_epoch, None)
    net.eval()
    return TrainResult(net=net, history=history, epochs=epochs, seconds=time.perf_counter() - start)
