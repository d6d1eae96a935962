"""The `monthly-forecast` Prefect flow: `seqcast.pipeline.run` through Prefect tasks (see `flows._prefect`).

No `from __future__ import annotations` here: Prefect builds the UI's parameter schema from the real
`RunConfig` annotation, which must not be a string when the flow is loaded from its file.
"""

import logging
from datetime import UTC, datetime
from typing import Any

from prefect import flow
from prefect.context import FlowRunContext
from prefect.runtime import flow_run
from prefect.schedules import Cron
from prefect.task_runners import ThreadPoolTaskRunner

from flows._prefect import PrefectExecutor, alert, secret, task_runner
from seqcast import pipeline
from seqcast.config import DEFAULT_CRON, DEFAULT_TIMEZONE, RunConfig, environment
from seqcast.records import RunOutcome
from seqcast.report import SHOWN_ROWS
from seqcast.workers import THREADS_PER_PROCESS

# The library logs one line per stage and chunk at INFO. Prefect attaches its handlers to the `seqcast`
# logger (PREFECT_LOGGING_EXTRA_LOGGERS=seqcast) but leaves its level at the root's WARNING.
logging.getLogger("seqcast").setLevel(logging.INFO)


def _run_name() -> str:
    """`monthly-forecast-2026-12-1a2b3c4d`: the month it was scheduled for, and its own id (every run's name
    differs, reruns in a month included)."""
    started = flow_run.scheduled_start_time or datetime.now(UTC)
    return f"monthly-forecast-{started:%Y-%m}-{str(flow_run.id)[:8]}"


#: The names `seqcast serve` and `deployments/prefect.yaml` register: distinct, so neither replaces the other.
SERVED = "monthly-forecast-served"
POOLED = "monthly-forecast"


def compact(outcome: RunOutcome) -> RunOutcome:
    """The outcome with at most SHOWN_ROWS metric and forecast rows (all of them are in the tables): Prefect
    walks a flow's return value item by item, which for thousands of series took seconds."""
    import dataclasses

    return dataclasses.replace(outcome, metrics=outcome.metrics[:SHOWN_ROWS], forecasts=outcome.forecasts[:SHOWN_ROWS])


@flow(
    name="monthly-forecast",
    flow_run_name=_run_name,
    task_runner=ThreadPoolTaskRunner(max_workers=THREADS_PER_PROCESS * RunConfig().workers),  # type: ignore[arg-type]
    on_failure=[alert],
    on_crashed=[alert],
)
def monthly_forecast(config: RunConfig = RunConfig()) -> dict[str, Any]:
    """Ingest new monthly data, retrain what changed, validate on the holdout, publish forecasts.

    Returns {"outcome": the run's outcome (its first SHOWN_ROWS metric and forecast rows), "task_states":
    each task run's final state by name}.
    """
    context = FlowRunContext.get()
    quoting = context is not None and isinstance(context.task_runner, ThreadPoolTaskRunner)
    executor = PrefectExecutor(config, quoting=quoting)
    # A deployment's database URL is read from the Secret block its parameters name, never passed as one.
    url = {"SEQCAST_DB_URL": secret(config.db_url_secret)} if config.db_url_secret else {}
    with environment(**url):
        outcome = pipeline.run(config, executor, str(flow_run.id))
    return {"outcome": compact(outcome), "task_states": executor.states}


def run_flow(config: RunConfig, runner: str = "threads", dask_address: str | None = None) -> RunOutcome:
    """One run of the flow with the given task runner (the command line's `seqcast run`)."""
    chosen = task_runner(runner, dask_address, config.workers, THREADS_PER_PROCESS)
    result = monthly_forecast.with_options(task_runner=chosen)(config)
    outcome: RunOutcome = result["outcome"]
    return outcome


def serve_monthly(config: RunConfig, cron: str = DEFAULT_CRON, timezone: str = DEFAULT_TIMEZONE) -> None:
    """Serve the monthly schedule from this process (one machine, no work pool); blocks until stopped."""
    monthly_forecast.serve(
        name=SERVED,
        schedules=[Cron(cron, timezone=timezone)],
        parameters={"config": config.model_dump(mode="json")},
        tags=["seqcast", *config.models],
        description="Monthly retrain-if-changed, holdout validation and forecasts (seqcast).",
        limit=1,  # one run at a time on this machine
    )
