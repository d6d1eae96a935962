"""The one composition of the monthly run, and the plain runner that executes it without an orchestrator.

    ingest -> snapshot -> validate, train (per chunk) [-> global] -> forecast (per chunk) -> charts + publish
    -> report

`run` writes the stage graph once; an `Executor` runs each stage. `PlainExecutor` calls them in this process
(a thread per chunk in flight); the Prefect flow (`flows/`) runs the same graph through an executor whose
stages are cached, retried Prefect tasks.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Protocol

from seqcast import forecast as fc
from seqcast import models as m
from seqcast import progress, store, workers
from seqcast import stages as st
from seqcast.config import RunConfig
from seqcast.errors import one_line
from seqcast.lock import run_lock
from seqcast.records import Charts, Failure, Fit, Forecast, RunOutcome, SeriesRef, Skip, Validation

log = logging.getLogger(__name__)

#: Chunks submitted ahead per training process: enough that a slow chunk never leaves a process without work.
IN_FLIGHT = 4
#: Series named one by one in the run's closing log record (all of them are in `series_status`).
LOGGED_SERIES = 20


class Executor(Protocol):
    """How a runner executes the stages `run` composes."""

    def submit(self, stage: st.Stage, *args: Any, label: str = "") -> Any:
        """Start `stage(*args)`; returns a handle for `result`. `label` names the call (a chunk's series)."""
        ...

    def result(self, handle: Any) -> Any:
        """Wait for a submitted stage and return its result (or raise its exception)."""
        ...

    def progress(self, done: int, total: int) -> None:
        """`done` of `total` chunks are validated and trained."""
        ...

    def not_published(self, skipped: Sequence[Skip]) -> None:
        """These series were not published this run (shown as failures where the runner can)."""
        ...


class PlainExecutor:
    """Stages called in this process, several chunks at a time on threads (their training in the training
    processes of `workers`)."""

    def __init__(self, threads: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="seqcast-stage")

    def submit(self, stage: st.Stage, *args: Any, label: str = "") -> Future[Any]:
        return self._pool.submit(stage, *args)

    def result(self, handle: Future[Any]) -> Any:
        while not wait([handle], timeout=WAKE_SECONDS).done:
            pass
        return handle.result()

    def progress(self, done: int, total: int) -> None:
        """The command line's bar follows the series (`seqcast.progress`)."""

    def not_published(self, skipped: Sequence[Skip]) -> None:
        """Listed in the outcome and `series_status`."""

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


#: How long the run's main thread waits on a stage at a time: a signal the kernel hands to another thread
#: (Ctrl-C, SIGTERM) is acted on only when the main thread wakes, so it never waits in one blocking call.
WAKE_SECONDS = 0.5


def new_run_id() -> str:
    return f"{store.utcnow():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def config_json(config: RunConfig) -> str:
    """The settings as stored with a run: a database URL's password never reaches the table."""
    values = config.model_dump(mode="json")
    if values.get("db_url"):
        values["db_url"] = store.redacted(values["db_url"])
    return json.dumps(values, sort_keys=True)


def begin_run(config: RunConfig, flow_run_id: str | None = None) -> str:
    """Record a new run as running (under the run lock) and return its id."""
    run_id = new_run_id()
    engine = store.engine(config.database_url())
    store.start_run(engine, run_id, flow_run_id, config_json(config), str(config.paths().root.resolve()))
    return run_id


def fail_run(config: RunConfig, run_id: str, exc: BaseException) -> None:
    """Mark a run failed with the reason, or interrupted when it was stopped (its partial results were never
    published; a rerun finishes from what was done)."""
    stopped = not isinstance(exc, Exception)  # Ctrl-C, SIGTERM (TerminationSignal within a flow run), an exit
    status, message = ("interrupted", f"stopped ({one_line(exc)})") if stopped else ("failed", one_line(exc, 2000))
    store.finish_run(store.engine(config.database_url()), run_id, status, message)


def chunked(items: Sequence[Any], size: int, workers: int = 1) -> list[list[Any]]:
    """Consecutive chunks of `size` items, in order; with several workers, the last `2 * workers` chunks' worth
    of items comes in half-size chunks.

    The chunks' jobs run `workers` at a time, in order: short last jobs end closer together, so a worker waits
    less for another's long last one (the run's end waits for the last job).
    """
    items = list(items)
    tail = 2 * workers * size if workers > 1 else 0
    head = max(0, len(items) - tail) // size * size
    small = max(1, size // 2) if workers > 1 else size
    return [items[i : i + size] for i in range(0, head, size)] + [
        items[i : i + small] for i in range(head, len(items), small)
    ]


def chunk_label(refs: Sequence[SeriesRef]) -> str:
    """A short human label for a chunk of series (task names in the UI)."""
    first = str(refs[0].series_id)[:40] if refs else "empty"
    return first if len(refs) <= 1 else f"{first}+{len(refs) - 1}"


def for_refs(results: Sequence[Any], refs: Sequence[SeriesRef]) -> list[Any]:
    """The per-series results that belong to these refs."""
    wanted = {r.series_id for r in refs}
    return [r for r in results if r.series_id in wanted]


def run(config: RunConfig, executor: Executor, flow_run_id: str | None = None) -> RunOutcome:
    """One monthly run, every stage through `executor`, under the data folder's lock."""
    pending = bool(st.pending_files(config))
    with run_lock(config), workers.training_processes(config.workers, start_now=pending):
        run_id = begin_run(config, flow_run_id)
        try:
            return _stages(run_id, config, executor)
        except BaseException as exc:
            if not isinstance(exc, Exception):
                progress.stopping()
            fail_run(config, run_id, exc)
            raise


def _stages(run_id: str, config: RunConfig, ex: Executor) -> RunOutcome:
    ingested = ex.result(ex.submit(st.INGEST, config))
    log.info(
        "ingest: %d new observations, %d revised, %d file(s)",
        ingested.new_observations,
        ingested.revised_observations,
        len(ingested.batches),
    )
    snap = ex.result(ex.submit(st.SNAPSHOT, config, ingested.data_version))
    log.info("snapshot: %d series to model, %d skipped", len(snap.eligible), len(snap.skipped))
    validations, fits, forecasts = model_stages(list(snap.eligible), config, ex)
    # The charts are drawn (in the training processes, idle by now) while publish writes the tables.
    charts_run = ex.submit(st.CHARTS, run_id, config, validations, fits, forecasts)
    outcome: RunOutcome = ex.result(ex.submit(st.PUBLISH, run_id, config, ingested, snap, validations, fits, forecasts))
    _log_outcome(outcome)
    ex.not_published(outcome.skipped)
    charts: Charts = ex.result(charts_run)
    final: RunOutcome = ex.result(ex.submit(st.REPORT, outcome, config, charts))
    log.info(
        "published: %d trained, %d reused, %d not trained; report %s",
        len(final.trained),
        len(final.reused),
        len(final.skipped),
        final.report,
    )
    return final


def model_stages(
    refs: list[SeriesRef], config: RunConfig, ex: Executor
) -> tuple[list[Validation | Failure], list[Fit | Failure], list[Forecast | Failure]]:
    """Validate, fit, combine and forecast every series: the part of a run a backtest replays at each origin.

    The global networks (trained on every series) start first; the chunks follow a few at a time, since stages
    start in the order they are submitted. Forecasts come once every series is validated: the intervals are
    calibrated across them.
    """
    chunks = chunked(refs, config.chunk_size, config.workers)
    global_run = ex.submit(st.GLOBAL, refs, config) if config.global_configs() else None
    waiting = deque(chunks)
    in_flight: deque[tuple[Any, Any]] = deque()

    def submit_chunk() -> None:
        chunk = waiting.popleft()
        label = chunk_label(chunk)
        in_flight.append(
            (ex.submit(st.VALIDATE, chunk, config, label=label), ex.submit(st.TRAIN, chunk, config, label=label))
        )

    for _ in range(min(len(waiting), IN_FLIGHT * config.workers)):
        submit_chunk()
    validations: list[Validation | Failure] = []
    fits: list[Fit | Failure] = []
    for done in range(1, len(chunks) + 1):
        v_run, t_run = in_flight.popleft()
        validations += ex.result(v_run)
        fits += ex.result(t_run)
        if waiting:
            submit_chunk()
        ex.progress(done, len(chunks))
    if global_run is not None:
        validations, fits = fc.add_global(validations, fits, ex.result(global_run))
    if config.combine:
        kinds = [*(c.kind for c in config.model_configs()), *(m.global_kind(c.kind) for c in config.global_configs())]
        validations, fits = fc.add_combination(validations, fits, fc.members_of(kinds))
    calibration = fc.calibrate(validations, config.interval_levels)
    forecast_runs = [
        ex.submit(
            st.FORECAST, c, for_refs(validations, c), for_refs(fits, c), config, calibration, label=chunk_label(c)
        )
        for c in chunks
    ]
    forecasts: list[Forecast | Failure] = [f for run_ in forecast_runs for f in ex.result(run_)]
    return validations, fits, forecasts


def _log_outcome(outcome: RunOutcome) -> None:
    """One record: the first series one per line, then how many more."""
    finished = [(sid, "trained") for sid in outcome.trained] + [(sid, "reused (unchanged)") for sid in outcome.reused]
    lines = [f"series {sid}: {what}, champion {outcome.champions[sid]}" for sid, what in finished[:LOGGED_SERIES]]
    if len(finished) > LOGGED_SERIES:
        lines.append(f"... and {len(finished) - LOGGED_SERIES} more (table series_status)")
    if lines:
        log.info("%s", "\n".join(lines))


def run_pipeline(config: RunConfig, flow_run_id: str | None = None) -> RunOutcome:
    """Run every stage in this process (no orchestrator needed)."""
    executor = PlainExecutor(workers.THREADS_PER_PROCESS * config.workers)
    try:
        return run(config, executor, flow_run_id)
    finally:
        executor.close()


__all__ = ["Executor", "PlainExecutor", "chunk_label", "chunked", "run", "run_pipeline"]
