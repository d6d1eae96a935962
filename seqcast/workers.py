"""Training in worker processes.

Chunks of series are worked on from several threads at once (the orchestrator's task runner), but a
training step is many small tensor operations whose Python dispatch holds the GIL: two training threads
used about 1.1 of 2 cores in a run, two processes 1.8. Inside a `training_processes` block, a chunk's
whole job (`call`: read the series, fit, store the models, predict, score) is sent to a shared pool of
processes instead (started as seqcast.processes says), and only its small records come back; outside
one, it runs in the calling thread. The result is the same either way: a worker runs the same seeded,
single-threaded code. What a job logs in a worker is logged again in the calling thread, so it reaches
the same handlers (the orchestrator's run log included).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import io
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import psutil
import torch

from seqcast import models, processes
from seqcast.config import ModelConfig
from seqcast.models.global_network import GlobalForecaster

T = TypeVar("T")
#: Task threads per training process. Between two jobs a task thread also waits on its orchestrator (task-run
#: states, results), during which other threads' jobs keep the process busy (four were faster than two).
THREADS_PER_PROCESS = 4
_pool: ProcessPoolExecutor | None = None
#: How long a stopped training process may take to end on SIGTERM, then on SIGKILL.
STOP_SECONDS = 5.0
#: How many times a stop looks again for training processes that appeared while it ended the others.
STOP_ROUNDS = 3
_lock = threading.Lock()
#: Set when a block is left on Ctrl-C or SIGTERM: from then on no job starts, here or in a process (a stage
#: retried by its orchestrator would otherwise train in its thread, where nothing can stop it).
_stopping = threading.Event()
#: Jobs submitted and not yet returned, per pool (by id).
_busy: dict[int, int] = {}


@contextmanager
def training_processes(n: int, start_now: bool = False) -> Iterator[None]:
    """Train in up to `n` worker processes for the duration (n <= 1: in the calling thread).

    Workers are started on first use (a run with nothing to train starts none), or at once with `start_now`
    (a run expecting new data: their start then overlaps the run's ingest instead of delaying its first chunk).
    They are stopped on exit.
    """
    global _pool
    _stopping.clear()
    if n <= 1:
        yield
        return
    pool = ProcessPoolExecutor(n, mp_context=processes.context(), initializer=_start_worker, initargs=(os.getpid(),))
    with _lock:
        previous, _pool = _pool, pool
        _busy[id(pool)] = 0
    if start_now:
        for _ in range(n):
            pool.submit(_ready)  # with none idle, each submit starts a worker
    stopped = False
    try:
        yield
    except BaseException as exc:
        # Ctrl-C, SIGTERM (Prefect's TerminationSignal within a flow run), an exit: not an error of the run.
        stopped = not isinstance(exc, Exception)
        raise
    finally:
        if stopped:
            _stopping.set()
        with _lock:
            _pool = previous
            busy = _busy.pop(id(pool))
        if stopped:
            _stop_now(pool)
        else:
            # Queued jobs are cancelled; a running one (the block left on an error) is waited for, so that nothing
            # still writes once the block is left. With none running, the processes' exit (interpreter teardown
            # with torch loaded) overlaps what the caller does next; at interpreter exit concurrent.futures still
            # joins them, so none outlives this process.
            pool.shutdown(wait=busy > 0, cancel_futures=True)


def _stop_now(pool: ProcessPoolExecutor) -> None:
    """Ctrl-C or SIGTERM: stop the pool's processes now, whatever they are doing (what they wrote is atomic, and
    a rerun redoes what did not finish), and return once they and the pool's manager are gone.

    The pool is shut first, so that no job (whose submission would start a process) comes after. Its processes
    are then found as the processes themselves, not from the pool's table, which was seen empty while two
    trained (the pool's own shutdown then waited for ever): its own table, and every process of this run's
    fork server or spawned by this process. They are ended and waited for; the manager, woken, finds them gone
    and fails the jobs that were running. One the fork server had been asked for just before, which appears
    only after that, is looked for again and ended too (a few rounds at most).
    """
    table = getattr(pool, "_processes", None) or {}  # (the pool's own table: it forgets it on shutdown)
    manager = getattr(pool, "_executor_manager_thread", None)
    wakeup = getattr(pool, "_executor_manager_thread_wakeup", None)
    pool.shutdown(wait=False, cancel_futures=True)
    pids = {p.pid for p in list(table.values()) if p.pid is not None} | set(processes.training_pids())
    for _ in range(STOP_ROUNDS):
        found = []
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                found.append(psutil.Process(pid))
        processes.end(found, STOP_SECONDS)
        if manager is not None:
            if wakeup is not None:
                with contextlib.suppress(OSError, ValueError):  # (closed once the manager has left)
                    wakeup.wakeup()
            manager.join(timeout=STOP_SECONDS)
        # A process asked of the fork server just before the shutdown can appear after it was looked for.
        pids = set(processes.training_pids())
        if not pids:
            break


class Stopping(RuntimeError):
    """A job asked for while the run is being stopped."""


def _refuse_when_stopping() -> None:
    if _stopping.is_set():
        raise Stopping("the run is being stopped (Ctrl-C or SIGTERM): no training starts")


def in_processes() -> bool:
    """Whether `call` runs its jobs in worker processes (inside a `training_processes` block)."""
    return _pool is not None


def call(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in a worker process inside a `training_processes` block, else in this thread.

    `fn` must be a module-level function and its arguments and result picklable (records, not models).
    Its log records (at this process's level for the `seqcast` logger) are handled here, in order, and
    its exception is raised here.
    """
    _refuse_when_stopping()
    pool = _pool
    if pool is None:
        return fn(*args)
    level = logging.getLogger("seqcast").getEffectiveLevel()
    with _lock:
        _busy[id(pool)] += 1
    try:
        outcome, records = pool.submit(_call_logged, level, fn, *args).result()
    finally:
        with _lock:
            if id(pool) in _busy:  # (the block is still open)
                _busy[id(pool)] -= 1
    for record in records:
        logging.getLogger(record.name).handle(record)
    if isinstance(outcome, _Raised):
        raise outcome.error
    result: T = outcome
    return result


def fit_many(config: ModelConfig, series: list[np.ndarray], curve: bool, batched: bool) -> list[Any]:
    """One fitted model of the configured kind per series, in this process (`Forecaster.fit_many`: batched where
    the kind can and it pays). A chunk's whole job goes to the training processes (`call`), so this runs there."""
    return models.kind(config.kind).forecaster().fit_many(config, series, curve, batched)


def fit_globals(jobs: list[tuple[ModelConfig, int, int, list[np.ndarray]]]) -> list[GlobalForecaster]:
    """Fitted global networks, one per job (config, steps, batch size, series). Inside a `training_processes`
    block every member of every ensemble trains in the worker processes at once; else one after another here."""
    _refuse_when_stopping()
    pool = _pool
    if pool is None:
        return [GlobalForecaster(config, steps, batch).fit(series) for config, steps, batch, series in jobs]
    futures = [
        [
            pool.submit(_fit_global_member, config.model_dump_json(), steps, batch, series, m)
            for m in range(config.ensemble)
        ]
        for config, steps, batch, series in jobs
    ]
    out = []
    for (config, steps, batch, _), members in zip(jobs, futures, strict=True):
        results = [future.result() for future in members]
        states = [_load(blob) for blob, _, _, _, _ in results]
        _, history, _, n_series, n_windows = results[0]
        seconds = sum(r[2] for r in results)
        out.append(GlobalForecaster(config, steps, batch).set_members(states, history, seconds, n_series, n_windows))
    return out


# ---------------------------------------------------------------------------------------------- in the worker


def _start_worker(run: int) -> None:
    """A worker process's start: watch the run's process, load what its jobs need, freeze the loaded objects.

    Ctrl-C in a terminal reaches the whole process group: the worker leaves it to the run, which stops it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_run(run)
    importlib.import_module(processes.JOBS_MODULE)  # (already loaded when forked from the fork server)
    # The modules' objects are never garbage: frozen, the collections during training skip them (see the CLI),
    # and, in a forked worker, leave the pages it shares with the fork server unwritten.
    gc.freeze()


def _ready() -> None:
    """A job that only makes the pool start a worker."""


def _exit_with_run(run: int) -> None:
    """End this worker when the run's process is gone (even after `kill -9`, which skips the pool's shutdown):
    a worker holds both ends of its task queue, so it would otherwise wait for work forever."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(run, 0)  # (signal 0: only whether the process exists)
            except OSError:  # gone (or its id reused by another user's process)
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-run", daemon=True).start()


class _Raised:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        # Sent back by pickling: the message is rendered now, a traceback kept as text.
        record.msg, record.args = record.getMessage(), None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        self.records.append(record)


def _call_logged(level: int, fn: Callable[..., Any], *args: Any) -> tuple[Any, list[logging.LogRecord]]:
    logger = logging.getLogger("seqcast")
    collect = _Collect()
    logger.addHandler(collect)
    logger.setLevel(level)
    logger.propagate = False  # nothing is printed here: the caller handles the records
    try:
        try:
            return fn(*args), collect.records
        except Exception as exc:
            return _Raised(exc), collect.records
    finally:
        logger.removeHandler(collect)


def _fit_global_member(
    config_json: str, steps: int, batch: int, series: list[np.ndarray], member: int
) -> tuple[bytes, Any, float, int, int]:
    config = ModelConfig.model_validate_json(config_json)
    start = time.perf_counter()
    state, history, n_series, n_windows = GlobalForecaster(config, steps, batch).fit_member(series, member)
    return _dump(state), history, time.perf_counter() - start, n_series, n_windows


def _dump(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _load(blob: bytes) -> dict[str, Any]:
    state: dict[str, Any] = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    return state
