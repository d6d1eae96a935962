"""The `monthly-forecast` Prefect flow: each stage of `seqcast.pipeline` as a cached, retryable task.

Caching is keyed on content (data hashes, settings hashes, model code version), never on frames or
models, and results are persisted under the data folder so a hit survives a new process.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import TaskRunContext
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from seqcast import pipeline, store
from seqcast.config import RunConfig
from seqcast.report import forecast_table, metrics_table, summary_markdown

RETRIES = dict(retries=2, retry_delay_seconds=[2, 10])


def _key(stage: str, with_refs: bool = False):
    def key_fn(context: TaskRunContext, parameters: dict[str, Any]) -> str:
        config: RunConfig = parameters["config"]
        refs = parameters.get("refs") if with_refs else None
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
    return pipeline.forecast_chunk(refs, validations, finals, config)


def _run_key(stage: str):
    """Per-run key: a retried or resumed task of the same run reuses its result, another run never does."""

    def key_fn(context: TaskRunContext, parameters: dict[str, Any]) -> str:
        run_id = parameters["run_id"] if "run_id" in parameters else parameters["outcome"]["run_id"]
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
    return pipeline.publish_stage(run_id, config, ingested, snap, validations, finals, forecasts)


@task(name="report", cache_key_fn=_run_key("report"), **RETRIES)
def report(outcome: dict, config: RunConfig, validations: list, finals: list) -> dict[str, Any]:
    outcome = pipeline.report_stage(outcome, config, validations, finals)
    create_table_artifact(
        key="metrics",
        table=metrics_table(outcome),
        description="Holdout metrics per series and model; seasonal naive alongside",
    )
    create_table_artifact(
        key="forecasts",
        table=forecast_table(outcome),
        description="Published forecasts (the champion of each series)",
    )
    create_markdown_artifact(key="run-summary", markdown=summary_markdown(outcome), description="Run summary")
    return outcome


def _run_name() -> str:
    started = flow_run.scheduled_start_time or datetime.now(UTC)
    return f"monthly-forecast-{started:%Y-%m}"


@flow(name="monthly-forecast", flow_run_name=_run_name, task_runner=ThreadPoolTaskRunner(max_workers=2))
def monthly_forecast(config: RunConfig = RunConfig()) -> dict[str, Any]:
    """Ingest new monthly data, retrain what changed, validate on the holdout, publish forecasts."""
    logger = get_run_logger()
    storage = Path(config.paths().root).resolve() / "task-results"
    states: dict[str, str] = {}

    def run(task_: Any, *args: Any, name: str) -> Any:
        future = task_.with_options(result_storage=storage).submit(*args)
        return name, future

    def result(named: tuple[str, Any]) -> Any:
        name, future = named
        value = future.result()
        states[name] = future.state.name
        return value

    with pipeline.run_lock(config):
        run_id = pipeline.new_run_id()
        engine = store.open_engine(config.database_url())
        store.start_run(engine, run_id, str(flow_run.id), pipeline.config_json(config))
        try:
            ingested = result(run(ingest, config, name="ingest"))
            logger.info(
                "ingest: %d new observations, %d revised, %d file(s)",
                ingested["new_observations"],
                ingested["revised_observations"],
                len(ingested["batches"]),
            )
            snap = result(run(snapshot, config, ingested["data_version"], name="snapshot"))
            chunks = pipeline.chunked(snap["eligible"], config.chunk_size)
            labels = [pipeline.chunk_label(c) for c in chunks]
            v_futs = [
                run(validate, c, config, lab, name=f"validate-{lab}") for c, lab in zip(chunks, labels, strict=False)
            ]
            t_futs = [run(train, c, config, lab, name=f"train-{lab}") for c, lab in zip(chunks, labels, strict=False)]
            validations = [v for f in v_futs for v in result(f)]
            finals = [t for f in t_futs for t in result(f)]
            f_futs = [
                run(
                    forecast,
                    c,
                    pipeline.for_refs(validations, c),
                    pipeline.for_refs(finals, c),
                    config,
                    lab,
                    name=f"forecast-{lab}",
                )
                for c, lab in zip(chunks, labels, strict=False)
            ]
            forecasts = [row for f in f_futs for row in result(f)]
            outcome = result(
                run(publish, run_id, config, ingested, snap, validations, finals, forecasts, name="publish")
            )
            logger.info(
                "published: %d trained, %d reused, %d skipped",
                len(outcome["trained"]),
                len(outcome["reused"]),
                len(outcome["skipped"]),
            )
            outcome = result(run(report, outcome, config, validations, finals, name="report"))
            return {**outcome, "task_states": states}
        except BaseException as exc:
            store.finish_run_failed(engine, run_id, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            engine.dispose()
