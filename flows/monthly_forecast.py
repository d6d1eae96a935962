"""The `monthly-forecast` Prefect flow: each stage of `seqcast.pipeline` as a cached, retryable task.

Caching is keyed on content (data hashes, settings hashes, model code version), never on frames or
models, and results are persisted under the data folder so a hit survives a new process.

No `from __future__ import annotations` here: Prefect builds the UI's parameter schema from the real
`RunConfig` annotation, which must not be a string when the flow is loaded from its file.
"""

import logging
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext, TaskRunContext
from prefect.runtime import flow_run
from prefect.schedules import Cron
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from seqcast import pipeline
from seqcast.config import DEFAULT_CRON, DEFAULT_TIMEZONE, RunConfig
from seqcast.lock import run_lock
from seqcast.report import SHOWN_NAMES, compact, forecast_table, metrics_table, shown, summary_markdown
from seqcast.workers import THREADS_PER_PROCESS, training_processes

RETRIES = dict(retries=2, retry_delay_seconds=[2, 10])

# The library logs one line per stage and series at INFO. Prefect attaches its handlers to the `seqcast`
# logger (PREFECT_LOGGING_EXTRA_LOGGERS=seqcast) but leaves its level at the root's WARNING.
logging.getLogger("seqcast").setLevel(logging.INFO)


def _plain(value: Any) -> Any:
    """A parameter's value, whether or not it was passed wrapped in `quote`."""
    return value.unquote() if isinstance(value, quote) else value


def _key(stage: str, with_refs: bool = False):
    def key_fn(context: TaskRunContext, parameters: dict[str, Any]) -> str:
        config: RunConfig = parameters["config"]
        refs = _plain(parameters.get("refs")) if with_refs else None
        return pipeline.stage_key(stage, config, refs, extra=str(parameters.get("version", "")))

    return key_fn


def _ingest_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    config: RunConfig = parameters["config"]
    if pipeline.pending_files(config):
        return None  # received files are always recorded (the library skips known content by sha256)
    return pipeline.stage_key("ingest", config, extra=pipeline.data_version(config))


@task(name="ingest", cache_key_fn=_ingest_key, **RETRIES)
def ingest(config: RunConfig) -> dict[str, Any]:
    return pipeline.ingest_stage(config)


@task(name="snapshot", cache_key_fn=_key("snapshot"), **RETRIES)
def snapshot(config: RunConfig, version: str) -> dict[str, Any]:
    return pipeline.snapshot_stage(config)


@task(name="validate", task_run_name="validate-{label}", cache_key_fn=_key("validate", True), **RETRIES)
def validate(refs: list[dict[str, Any]], config: RunConfig, label: str) -> list[dict[str, Any]]:
    return pipeline.validate_chunk(refs, config)


@task(name="train", task_run_name="train-{label}", cache_key_fn=_key("train", True), **RETRIES)
def train(refs: list[dict[str, Any]], config: RunConfig, label: str) -> list[dict[str, Any]]:
    return pipeline.train_chunk(refs, config)


@task(name="forecast", task_run_name="forecast-{label}", cache_key_fn=_key("forecast", True), **RETRIES)
def forecast(
    refs: list[dict[str, Any]], validations: list, finals: list, config: RunConfig, label: str
) -> list[dict[str, Any]]:
    return pipeline.forecast_chunk(refs, _plain(validations), _plain(finals), config)


@task(name="global-model", cache_key_fn=_key("global", True), **RETRIES)
def global_model(refs: list[dict[str, Any]], config: RunConfig) -> dict[str, Any] | None:
    return pipeline.global_stage(_plain(refs), config)


def _run_key(stage: str):
    """Per-run key: a retried or resumed task of the same run reuses its result, another run never does."""

    def key_fn(context: TaskRunContext, parameters: dict[str, Any]) -> str:
        run_id = parameters["run_id"] if "run_id" in parameters else _plain(parameters["outcome"])["run_id"]
        return f"{stage}-{run_id}"

    return key_fn


@task(name="publish", cache_key_fn=_run_key("publish"), **RETRIES)
def publish(
    run_id: str,
    config: RunConfig,
    ingested: dict,
    snap: dict,
    validations: list,
    finals: list,
    forecasts: list,
) -> dict[str, Any]:
    return pipeline.publish_stage(
        run_id, config, *(_plain(v) for v in (ingested, snap, validations, finals, forecasts))
    )


@task(name="charts", cache_key_fn=_run_key("charts"), **RETRIES)
def charts(run_id: str, config: RunConfig, validations: list, finals: list, forecasts: list) -> list[str]:
    return pipeline.charts_stage(run_id, config, *(_plain(v) for v in (validations, finals, forecasts)))


@task(name="report", cache_key_fn=_run_key("report"), **RETRIES)
def report(outcome: dict, config: RunConfig, plots: list[str]) -> dict[str, Any]:
    outcome = pipeline.report_stage(_plain(outcome), config, plots)
    metrics, metrics_note = shown(metrics_table(outcome), "latest_metrics")
    create_table_artifact(
        key="metrics",
        table=metrics,
        description=f"Holdout metrics per series and model; seasonal naive alongside. {metrics_note}",
    )
    forecasts, forecasts_note = shown(forecast_table(outcome), "latest_forecasts")
    create_table_artifact(
        key="forecasts",
        table=forecasts,
        description=f"Published forecasts (the champion of each series). {forecasts_note}",
    )
    create_markdown_artifact(key="run-summary", markdown=summary_markdown(outcome), description="Run summary")
    return outcome


class SeriesNotTrained(RuntimeError):
    """Raised by the `not-trained` task so that the UI shows the series as Failed, with the reason."""


@task(name="not-trained", task_run_name="not-trained-{series_id}", cache_policy=NO_CACHE, retries=0)
def not_trained(series_id: str, reason: str) -> None:
    raise SeriesNotTrained(f"{series_id}: {reason}")


#: Chunks submitted ahead per training process: enough that a slow chunk never leaves a process without work.
IN_FLIGHT = 4

#: Failed tasks shown per run for series that could not be trained; the rest are listed in the summary.
MAX_FAILED_TASKS = 50


def _run_name() -> str:
    started = flow_run.scheduled_start_time or datetime.now(UTC)
    return f"monthly-forecast-{started:%Y-%m}"


@flow(
    name="monthly-forecast",
    flow_run_name=_run_name,
    task_runner=ThreadPoolTaskRunner(max_workers=THREADS_PER_PROCESS * RunConfig().workers),
)
def monthly_forecast(config: RunConfig = RunConfig()) -> dict[str, Any]:
    """Ingest new monthly data, retrain what changed, validate on the holdout, publish forecasts.

    Returns the run's outcome, with the first SHOWN_ROWS metric and forecast rows (all of them are in the tables).
    """
    logger = get_run_logger()
    storage = Path(config.paths().root).resolve() / "task-results"
    states: dict[str, str] = {}

    # Large inputs (every series' results) are passed in `quote`: Prefect otherwise walks each element of a
    # task's parameters looking for futures, which with thousands of series cost more than the task itself.
    # (The thread runner unwraps `quote` before calling the task; prefect-dask's does not, so it gets plain values.)
    big: Any = quote if isinstance(FlowRunContext.get().task_runner, ThreadPoolTaskRunner) else (lambda v: v)

    def run(task_: Any, *args: Any, name: str) -> Any:
        future = task_.with_options(result_storage=storage).submit(*args)
        return name, future

    def result(named: tuple[str, Any]) -> Any:
        name, future = named
        value = future.result()
        states[name] = future.state.name
        return value

    # Chunks are trained in `config.workers` processes (see seqcast.workers); tasks run in threads or on Dask.
    # Task runs carry no tags (flow runs of the deployment do): before it starts, a tagged task run asks the
    # server for concurrency slots on its tags, one request at a time for the process, and the answer "no such
    # limit" is kept only 5 s. On a server busy with a run's states and logs the request took about 2 s, so
    # every 7-8 s a task waited that long in Pending (16 tasks of a 1,000-series run), the last forecast too.
    with run_lock(config), training_processes(config.workers, start_now=bool(pipeline.pending_files(config))):
        run_id = pipeline.begin_run(config, str(flow_run.id))
        try:
            ingested = result(run(ingest, config, name="ingest"))
            logger.info(
                "ingest: %d new observations, %d revised, %d file(s)",
                ingested["new_observations"],
                ingested["revised_observations"],
                len(ingested["batches"]),
            )
            snap = result(run(snapshot, config, ingested["data_version"], name="snapshot"))
            logger.info("snapshot: %d series to model, %d skipped", len(snap["eligible"]), len(snap["skipped"]))
            chunks = pipeline.chunked(snap["eligible"], config.chunk_size, config.workers)
            labels = [pipeline.chunk_label(c) for c in chunks]
            progress_id = create_progress_artifact(0.0, description=f"{len(snap['eligible'])} series to model")
            # The global model (trained on every series) starts first; the chunks follow a few at a time, since
            # task runs start in the order they are submitted: a chunk is forecast as soon as it is validated and
            # trained, while later chunks train, unless the global model competes (then the forecasts wait for it).
            g_fut = (
                run(global_model, big(snap["eligible"]), config, name="global-model") if config.global_model else None
            )
            pending = deque(zip(chunks, labels, strict=True))
            in_flight: deque = deque()

            def submit_chunk() -> None:
                c, lab = pending.popleft()
                in_flight.append(
                    (
                        c,
                        lab,
                        run(validate, c, config, lab, name=f"validate-{lab}"),
                        run(train, c, config, lab, name=f"train-{lab}"),
                    )
                )

            for _ in range(min(len(pending), IN_FLIGHT * config.workers)):
                submit_chunk()
            validations: list[dict[str, Any]] = []
            finals: list[dict[str, Any]] = []
            f_futs = []
            for done in range(1, len(chunks) + 1):
                c, lab, v_fut, t_fut = in_flight.popleft()
                chunk_validations, chunk_finals = result(v_fut), result(t_fut)
                if pending:
                    submit_chunk()
                validations += chunk_validations
                finals += chunk_finals
                if g_fut is None:
                    f_futs.append(
                        run(forecast, c, big(chunk_validations), big(chunk_finals), config, lab, name=f"forecast-{lab}")
                    )
                update_progress_artifact(progress_id, 100.0 * done / len(chunks))
            update_progress_artifact(progress_id, 100.0)
            if g_fut is not None:
                validations, finals = pipeline.add_global(validations, finals, result(g_fut))
                f_futs = [
                    run(
                        forecast,
                        c,
                        big(pipeline.for_refs(validations, c)),
                        big(pipeline.for_refs(finals, c)),
                        config,
                        lab,
                        name=f"forecast-{lab}",
                    )
                    for c, lab in zip(chunks, labels, strict=True)
                ]
            forecasts = [row for f in f_futs for row in result(f)]
            # The charts are drawn (in the training processes, idle by now) while publish writes the tables.
            plots = run(charts, run_id, config, *map(big, (validations, finals, forecasts)), name="charts")
            outcome = result(
                run(
                    publish,
                    run_id,
                    config,
                    *map(big, (ingested, snap, validations, finals, forecasts)),
                    name="publish",
                )
            )
            # One record: the first series one per line, then how many more (all of them are in `series_status`).
            finished = [(sid, "trained") for sid in outcome["trained"]] + [
                (sid, "reused (unchanged)") for sid in outcome["reused"]
            ]
            lines = [
                f"series {sid}: {what}, champion {outcome['champions'][sid]}" for sid, what in finished[:SHOWN_NAMES]
            ]
            if len(finished) > SHOWN_NAMES:
                lines.append(f"... and {len(finished) - SHOWN_NAMES} more (table series_status)")
            if lines:
                logger.info("%s", "\n".join(lines))
            # Series that could not be trained show as Failed tasks; the run itself completes.
            failures = {
                s["series_id"]: not_trained.submit(s["series_id"], s["reason"])
                for s in outcome["skipped"][:MAX_FAILED_TASKS]
            }
            for series_id, failure in failures.items():
                failure.wait()
                states[f"not-trained-{series_id}"] = failure.state.name
            outcome = result(run(report, big(outcome), config, result(plots), name="report"))
            logger.info(
                "published: %d trained, %d reused, %d not trained; report %s",
                len(outcome["trained"]),
                len(outcome["reused"]),
                len(outcome["skipped"]),
                outcome["report"],
            )
            # Prefect walks a flow's return value item by item (looking for futures): for thousands of series the
            # full metric and forecast rows took seconds, so the run returns the first rows (all are in the tables).
            return {**compact(outcome), "task_states": states}
        except BaseException as exc:
            pipeline.fail_run(config, run_id, exc)
            raise


def serve_monthly(config: RunConfig, cron: str = DEFAULT_CRON, timezone: str = DEFAULT_TIMEZONE) -> None:
    """Serve the monthly schedule from this process (one machine, no work pool); blocks until stopped."""
    monthly_forecast.serve(
        name="monthly-forecast",
        schedules=[Cron(cron, timezone=timezone)],
        parameters={"config": config.model_dump(mode="json")},
        tags=["seqcast", *config.models],
        description="Monthly retrain-if-changed, holdout validation and forecasts (seqcast).",
        limit=1,  # one run at a time on this machine
    )
