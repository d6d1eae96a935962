"""Training in worker processes.

Chunks of series are trained from several threads at once (the orchestrator's task runner), but a
training step is many small tensor operations whose Python dispatch holds the GIL: two training threads
used about 1.1 of 2 cores in a run, two processes 1.8. Inside a `training_processes` block, every fit
of a chunk (from any thread) is sent to a shared pool of spawned processes instead; outside one, it
runs in the calling thread. The result is the same either way: a worker runs the same seeded,
single-threaded code, and models come back as tensors-only state (loaded with `weights_only=True`).
"""

from __future__ import annotations

import io
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch

from seqcast.config import ModelConfig
from seqcast.global_model import GlobalForecaster
from seqcast.models import RecurrentForecaster

#: Kinds whose batched training beats torch's own modules trained one by one (benchmarks/scale.py: rnn 4.8x,
#: gru 2.2x). torch's CPU LSTM is a single fused kernel that the stacked LSTM does not beat (0.8x), so a
#: chunk of LSTMs trains one by one even when batching is on.
BATCHED_KINDS = frozenset({"rnn", "gru"})

_pool: ProcessPoolExecutor | None = None
_lock = threading.Lock()


@contextmanager
def training_processes(n: int) -> Iterator[None]:
    """Train in up to `n` worker processes for the duration (n <= 1: in the calling thread).

    Workers are spawned on first use (a run with nothing to train starts none) and stopped on exit.
    """
    global _pool
    if n <= 1:
        yield
        return
    pool = ProcessPoolExecutor(
        n, mp_context=multiprocessing.get_context("spawn"), initializer=_exit_with_parent, initargs=(os.getpid(),)
    )
    with _lock:
        previous, _pool = _pool, pool
    try:
        yield
    finally:
        with _lock:
            _pool = previous
        pool.shutdown(wait=True, cancel_futures=True)


def fit_many(config: ModelConfig, series: list[np.ndarray], curve: bool, batched: bool) -> list[RecurrentForecaster]:
    """One fitted forecaster per series: batched (`RecurrentForecaster.fit_many`, for BATCHED_KINDS) or one by
    one (`fit`)."""
    pool = _pool
    if pool is None:
        return _fit(config, series, curve, batched)
    blobs = pool.submit(_fit_blobs, config.model_dump_json(), series, curve, batched).result()
    return [RecurrentForecaster.from_state(_load(blob)) for blob in blobs]


def fit_global(config: ModelConfig, steps: int, batch_size: int, series: list[np.ndarray]) -> GlobalForecaster:
    """A fitted global model (in a worker process inside a `training_processes` block)."""
    pool = _pool
    if pool is None:
        return GlobalForecaster(config, steps, batch_size).fit(series)
    blob = pool.submit(_fit_global_blob, config.model_dump_json(), steps, batch_size, series).result()
    return GlobalForecaster.from_state(_load(blob))


def _fit(config: ModelConfig, series: list[np.ndarray], curve: bool, batched: bool) -> list[RecurrentForecaster]:
    if batched and len(series) > 1 and config.kind in BATCHED_KINDS:
        return RecurrentForecaster.fit_many(config, series, curve=curve)
    return [RecurrentForecaster(config).fit(y, curve=curve) for y in series]


# ---------------------------------------------------------------------------------------------- in the worker


def _exit_with_parent(parent: int) -> None:
    """End this worker when the run that started it is gone (even after `kill -9`, which skips the pool's
    shutdown): a worker holds both ends of its task queue, so it would otherwise wait for work forever."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _fit_blobs(config_json: str, series: list[np.ndarray], curve: bool, batched: bool) -> list[bytes]:
    config = ModelConfig.model_validate_json(config_json)
    return [_dump(model.to_state()) for model in _fit(config, series, curve, batched)]


def _fit_global_blob(config_json: str, steps: int, batch_size: int, series: list[np.ndarray]) -> bytes:
    config = ModelConfig.model_validate_json(config_json)
    return _dump(GlobalForecaster(config, steps, batch_size).fit(series).to_state())


def _dump(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _load(blob: bytes) -> dict:
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
