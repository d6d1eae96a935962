"""Everything that touches Prefect: stages as tasks (names, retries, cache keys, safe results), artifacts,
task runners. `seqcast` itself never imports Prefect; `pipeline.run` takes the executor built here.

Caching is keyed on content (`Stage.key`: data hashes, settings hashes, model code version, and whether the
files a stage left are still there), never on frames or models. Results are persisted under the data folder in
`task-results/`, as plain JSON of seqcast's records, and a stored result is read only if it is exactly that:
Prefect would otherwise deserialise whatever serializer a stored file names (a pickle would run code).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prefect import Task, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.filesystems import LocalFileSystem
from prefect.futures import PrefectFuture, PrefectWrappedFuture
from prefect.serializers import Serializer
from prefect.utilities.annotations import NotSet, quote
from pydantic import Field

from seqcast import records
from seqcast.config import RunConfig
from seqcast.pipeline import WAKE_SECONDS
from seqcast.records import RunOutcome, Skip
from seqcast.report import forecast_table, metrics_table, shown, summary_markdown
from seqcast.stages import Stage, files_left, files_sound

log = logging.getLogger(__name__)

#: Retries of a stage that touches files or the database (a transient failure is retried), and their delays.
RETRIES = 2
RETRY_DELAYS: list[float] = [2, 10]
#: Failed tasks shown per run for series that were not published; the rest are listed in the summary.
MAX_FAILED_TASKS = 50
SERIALIZER_TYPE = records.RESULT_SERIALIZER


class RecordSerializer(Serializer):
    """Task results as JSON of seqcast's records (`seqcast.records.dumps`): nothing in them can run code."""

    type: str = Field(default=SERIALIZER_TYPE, frozen=True)

    def dumps(self, obj: Any) -> bytes:
        return records.dumps(obj)

    def loads(self, blob: bytes) -> Any:
        return records.loads(blob)


class UntrustedResult(ValueError):
    """A stored task result that seqcast did not write in its own format; it is recomputed, never loaded."""


def check_result(data: bytes) -> bytes:
    """`data` if it is a result record written with `RecordSerializer` (and nothing else)."""
    reason = records.stored_result_error(data)
    if reason is not None:
        raise UntrustedResult(reason)
    return data


def _touch(path: Path) -> None:
    """Mark a stored result as used now: `seqcast prune` keeps what a kept run wrote or read."""
    with contextlib.suppress(OSError):  # a read-only folder: the result is still good, only pruned sooner
        os.utime(path)


class ResultFolder(LocalFileSystem):
    """Task results in a folder, read back only when `check_result` accepts them (others are cache misses).
    Reading one touches it, so pruning by age never removes a result a recent run reused."""

    _block_type_name = "seqcast result folder"
    _block_type_slug = "seqcast-result-folder"

    async def aread_path(self, path: str) -> bytes:
        data = check_result(await super().aread_path(path))
        _touch(self._resolve_path(path))
        return data

    def read_path(self, path: str, _sync: bool | None = None) -> bytes:  # type: ignore[override]
        data: bytes = LocalFileSystem.read_path(self, path, _sync=True)  # type: ignore[call-arg, assignment]
        check_result(data)
        _touch(self._resolve_path(path))
        return data


def _plain(value: Any) -> Any:
    """A parameter's value, whether or not it was passed wrapped in `quote`."""
    return value.unquote() if isinstance(value, quote) else value


def _key_fn(stage: Stage, folder: Path) -> Callable[[TaskRunContext, dict[str, Any]], str | None]:
    def key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
        assert stage.key is not None
        value = stage.key(*(_plain(a) for a in parameters["args"]))
        if value is None:
            return None
        # Keys are shared across tasks (PREFECT-NOTES): a run key names its stage.
        value = f"{stage.name}-{value}" if stage.reuse == "run" else value
        if stage.leaves_files:
            _drop_if_unsound(folder / value)
        return value

    return key


def _drop_if_unsound(stored: Path) -> None:
    """Remove a stored result whose files are gone or altered (a deleted lake, a tampered model): the stage then
    runs again and makes them anew, instead of being reused from the cache."""
    try:
        data = check_result(stored.read_bytes())
    except FileNotFoundError:
        return
    except (OSError, UntrustedResult):
        stored.unlink(missing_ok=True)
        return
    result = records.loads(json.loads(data)["result"].encode())
    if not files_sound(files_left(result)):
        log.warning("stored result %s points at missing or altered files: running the stage again", stored.name)
        stored.unlink(missing_ok=True)


class PrefectExecutor:
    """Runs `pipeline.run`'s stages as Prefect tasks: cached on content, retried where they touch I/O, results
    persisted safely under the data folder; a progress artifact; unpublished series shown as Failed tasks; the
    report stage also writes the run's artifacts.

    Args:
        quoting: wrap large inputs in `quote`, so that Prefect does not walk each element looking for futures
            (which, with thousands of series, cost more than the task); the thread runner unwraps them before
            calling, and the tasks unwrap anything still wrapped.
    """

    def __init__(self, config: RunConfig, quoting: bool = True) -> None:
        self.folder = config.paths().results.resolve()
        self.storage = ResultFolder(basepath=str(self.folder))
        # Prefect takes result storage as a block saved on its server (Dask workers load it from there).
        name = f"seqcast-results-{hashlib.sha256(str(self.folder).encode()).hexdigest()[:16]}"
        self.storage.save(name, overwrite=True)
        self.quoting = quoting
        self.states: dict[str, str] = {}
        self._tasks: dict[str, Task[..., Any]] = {}
        self._progress: Any = None

    def _task(self, stage: Stage) -> Task[..., Any]:
        if stage.name not in self._tasks:
            after = _AFTER.get(stage.name)

            def body(*args: Any) -> Any:
                result = stage.fn(*(_plain(a) for a in args))
                return after(result) if after else result

            body.__name__ = body.__qualname__ = stage.name.replace("-", "_")
            reused = stage.reuse != "never"
            self._tasks[stage.name] = task(
                name=stage.name,
                persist_result=reused,
                result_storage=self.storage,
                result_serializer=RecordSerializer(),
                cache_policy=NO_CACHE if not reused else NotSet,
                cache_key_fn=_key_fn(stage, self.folder) if reused else None,
                retries=RETRIES if stage.io else 0,
                retry_delay_seconds=RETRY_DELAYS,
            )(body)
        return self._tasks[stage.name]

    def submit(self, stage: Stage, *args: Any, label: str = "") -> tuple[str, PrefectFuture[Any]]:
        name = f"{stage.name}-{label}" if label else stage.name
        wrapped = [quote(a) if self.quoting and not isinstance(a, (str, RunConfig)) else a for a in args]
        return name, self._task(stage).with_options(task_run_name=name).submit(*wrapped)

    def result(self, handle: tuple[str, PrefectFuture[Any]]) -> Any:
        name, future = handle
        if isinstance(future, PrefectWrappedFuture):  # (threads and Dask: a little at a time, see WAKE_SECONDS)
            while not future.wrapped_future.done():
                future.wait(timeout=WAKE_SECONDS)
        value = future.result()
        self.states[name] = str(future.state.name)
        return value

    def progress(self, done: int, total: int) -> None:
        if self._progress is None:
            self._progress = create_progress_artifact(0.0, description="chunks of series validated and trained")
        update_progress_artifact(self._progress, 100.0 * done / max(total, 1))

    def not_published(self, skipped: Sequence[Skip]) -> None:
        runs = {s.series_id: _not_trained.submit(s.series_id, s.reason) for s in skipped[:MAX_FAILED_TASKS]}
        for series_id, future in runs.items():
            future.wait()
            self.states[f"not-trained-{series_id}"] = str(future.state.name)


class SeriesNotTrained(RuntimeError):
    """Raised by the `not-trained` task so that the UI shows the series as Failed, with the reason."""


@task(name="not-trained", task_run_name="not-trained-{series_id}", cache_policy=NO_CACHE, retries=0)
def _not_trained(series_id: str, reason: str) -> None:
    raise SeriesNotTrained(f"{series_id}: {reason}")


def report_artifacts(outcome: RunOutcome) -> RunOutcome:
    """The run's metrics table, forecast table and summary, as artifacts of the report task."""
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
    emit_degraded(outcome)
    return outcome


#: The event a degraded series emits (an automation can act on it: deployments/automations/).
DEGRADED_EVENT = "seqcast.series.degraded"


def emit_degraded(outcome: RunOutcome) -> None:
    """One Prefect event per series the run found degraded (`seqcast.ledger`): resource `seqcast.series.<id>`,
    the run's flow run related (Prefect adds it), the reason in the payload."""
    from prefect.events import emit_event

    for series_id, reason in sorted(outcome.degraded.items()):
        emit_event(
            event=DEGRADED_EVENT,
            resource={
                "prefect.resource.id": f"seqcast.series.{series_id}",
                "prefect.resource.name": series_id,
                "seqcast.series-id": series_id,
            },
            payload={"series_id": series_id, "reason": reason, "run_id": outcome.run_id},
        )


_AFTER: dict[str, Callable[[Any], Any]] = {"report": report_artifacts}


DASK_NEEDS_SERVER = (
    "--task-runner dask needs a running Prefect server (each Dask worker would otherwise start its own): "
    "run `prefect server start`, then `export PREFECT_API_URL=http://127.0.0.1:4200/api`"
)


def task_runner(kind: str, address: str | None, workers: int, threads_per_worker: int) -> Any:
    """Threads in this process (training in `workers` processes), or Dask workers (one thread each).

    Raises ValueError when Dask is asked for without a Prefect server (each worker would start its own).
    """
    if kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=threads_per_worker * workers)
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise ValueError(DASK_NEEDS_SERVER)
    from prefect_dask.task_runners import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})


def secret(name: str) -> str:
    """The value of a Prefect Secret block (a database URL with its password, a webhook with its token)."""
    from prefect.blocks.system import Secret

    block: Any = Secret.load(name, _sync=True)  # type: ignore[call-arg]
    return str(block.get())


#: Where a failed or crashed run is reported: a webhook URL (SEQCAST_ALERT_WEBHOOK), or the name of a Prefect
#: Secret block holding one (SEQCAST_ALERT_WEBHOOK_SECRET). Kept out of the flow's parameters: a webhook URL
#: is often a credential.
ALERT_WEBHOOK = "SEQCAST_ALERT_WEBHOOK"
ALERT_WEBHOOK_SECRET = "SEQCAST_ALERT_WEBHOOK_SECRET"


def alert(flow: Any, flow_run: Any, state: Any) -> None:
    """A flow-run hook: POST what failed to the configured webhook (JSON), if one is configured.

    A notification that cannot be sent is logged; it never changes the run's own outcome.
    """
    import os
    import urllib.request

    url = os.environ.get(ALERT_WEBHOOK)
    if not url and os.environ.get(ALERT_WEBHOOK_SECRET):
        url = secret(os.environ[ALERT_WEBHOOK_SECRET])
    if not url:
        return
    message = " ".join(str(state.message or "").split())[:500]
    body = {
        "flow": flow.name,
        "flow_run": flow_run.name,
        "flow_run_id": str(flow_run.id),
        "state": state.name,
        "message": message,
    }
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
    except OSError as exc:
        log.warning("could not send the failure alert: %s", type(exc).__name__)


#: The sentinel watching this process, once started (a reference kept for the process's lifetime).
_sentinel: list[Any] = []


def start_temporary_server() -> None:
    """With no Prefect server configured, a flow uses Prefect's temporary one, which Prefect stops when this
    process exits. `seqcast run` starts it here, the way Prefect does (the same instance the flow's clients use,
    one per process: they find it running and start no other), with two additions: a sentinel stops it (and
    anything else the run started) if this process is killed outright, and it starts with SIGINT blocked, so
    that Ctrl-C in a terminal, which reaches the whole process group, stops the run (which then records its end
    on the server) but not the server under it."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value() or _sentinel:
        return
    from seqcast import processes, sentinel

    _sentinel.append(sentinel.start())
    with processes.sigint_blocked():
        SubprocessASGIServer().start()
