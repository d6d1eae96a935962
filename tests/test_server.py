"""Against a real `prefect server` on loopback: runs, task states, artifacts, schedules, deployments, the Dask
runner and a run's own temporary server. Reads the server's API as the UI does (`tests/prefect_server.py`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.prefect_server import (
    BIN,
    FAKE_ARGS,
    PASSWORD,
    ROOT,
    api,
    command,
    database_with_password,
    everything_the_server_holds,
    stop,
)

pytestmark = pytest.mark.server


def test_runs_task_states_and_artifacts_as_the_ui_shows_them(server: dict[str, str], tmp_path: Path) -> None:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    data = str(tmp_path / "data")
    for _ in range(2):  # fresh, then unchanged data
        done = command(
            server,
            "seqcast",
            "run",
            "--data-dir",
            data,
            "--global-steps",
            "100",
            "--model",
            "lstm",
            "--model",
            "gru",
            "--demo",
            "-q",
        )
        assert done.returncode == 0, done.stderr[-3000:]

    async def read(client):
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["monthly-forecast"])),
            sort=FlowRunSort.START_TIME_ASC,
        )
        tasks = {}
        artifacts = {}
        for run in runs:
            found = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
            tasks[run.id] = {t.name: (t.state.name, set(t.tags)) for t in found}
            from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

            arts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
            )
            artifacts[run.id] = {(a.key, a.type) for a in arts}
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[runs[0].id])))
        return runs, tasks, artifacts, [log.message for log in logs]

    runs, tasks, artifacts, first_logs = api(server, read)
    # `-q` quiets the terminal, never the UI: the first run's stage and per-series lines reached the server.
    assert any(m.startswith("snapshot: 1 series to model") for m in first_logs)
    assert any(m.startswith("series air_passengers: holdout 1960-01..1960-12 MAPE") for m in first_logs)
    assert len(runs) == 2
    assert [r.state.name for r in runs] == ["Completed", "Completed"]
    assert all(r.name.startswith("monthly-forecast-20") for r in runs)
    first, second = ({name: state for name, (state, _) in tasks[r.id].items()} for r in runs)
    assert first["train-air_passengers"] == "Completed"
    assert second["train-air_passengers"] == "Cached"
    assert second["validate-air_passengers"] == "Cached"
    stages = {name.split("-")[0] for name in second}
    assert {"ingest", "snapshot", "validate", "train", "forecast", "charts", "publish", "report"} <= stages
    # Task runs carry no tags (a tagged task run first asks the server for concurrency slots: see the flow).
    assert all(not task_tags for r in runs for _, task_tags in tasks[r.id].values())
    for run in runs:
        kinds = artifacts[run.id]
        assert {("metrics", "table"), ("forecasts", "table"), ("run-summary", "markdown")} <= kinds
        assert any(kind == "progress" for _, kind in kinds)
    assert list((tmp_path / "data" / "reports").glob("*.html"))


def test_serve_registers_the_monthly_schedule_and_runs_on_demand(
    server: dict[str, str], tmp_path: Path, postgres_server: str
) -> None:
    """Served with a database password in --db-url: the runs use that database, the UI never sees the password."""
    import sqlalchemy as sa

    data = tmp_path / "served"
    database = contextlib.ExitStack()
    url, with_password = database.enter_context(database_with_password(postgres_server))
    proc = subprocess.Popen(
        [str(BIN / "seqcast"), "serve", "--data-dir", str(data), "--model", "fake", "--db-url", with_password],
        env=server,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=ROOT,
    )
    try:

        async def deployment(client):
            return await client.read_deployment_by_name("monthly-forecast/monthly-forecast-served")

        deadline = time.monotonic() + 60
        found = None
        while found is None:
            try:
                found = api(server, deployment)
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        (schedule,) = found.schedules
        assert schedule.schedule.cron == "0 6 1 * *" and schedule.schedule.timezone == "UTC"
        assert found.parameters["config"]["data_dir"] == str(data)

        async def trigger(client):
            return await client.create_flow_run_from_deployment(found.id)

        flow_run = api(server, trigger)

        async def state(client):
            return (await client.read_flow_run(flow_run.id)).state

        deadline = time.monotonic() + 240
        current = api(server, state)
        while not current.is_final():
            assert time.monotonic() < deadline, f"deployment run still {current.name}"
            time.sleep(1)
            current = api(server, state)
        assert current.name == "Completed"
        assert not (data / "seqcast.db").exists()  # the run wrote to the database given, found in its environment
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM pipeline_runs")).scalar() == 1
        engine.dispose()
        assert found.parameters["config"]["db_url"] is None
        assert PASSWORD not in everything_the_server_holds(server)

        async def tags(client):
            return (await client.read_flow_run(flow_run.id)).tags

        # The deployment's runs are tagged (for filtering in the UI), as the deployment is.
        assert {"seqcast", "fake"} <= set(api(server, tags))
    finally:
        stop(proc)
        database.close()


def test_prefect_deploy_all_registers_the_yaml_deployment(server: dict[str, str]) -> None:
    # The README's commands, as written.
    pool = command(server, "prefect", "work-pool", "create", "seqcast-pool", "--type", "process")
    assert pool.returncode == 0, pool.stdout + pool.stderr
    deploy = command(server, "prefect", "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml")
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr

    async def deployment(client):
        return await client.read_deployment_by_name("monthly-forecast/monthly-forecast")

    found = api(server, deployment)
    assert found.work_pool_name == "seqcast-pool"
    crons = {(s.schedule.cron, s.schedule.timezone) for s in found.schedules}
    assert ("0 6 1 * *", "UTC") in crons
    assert found.entrypoint == "flows/monthly_forecast.py:monthly_forecast"


def test_dask_task_runner_gives_the_same_tables_as_threads(server: dict[str, str], tmp_path: Path) -> None:
    import sqlite3

    common = ["--model", "fake", "--statistical", "none", "--demo", "-q"]
    dask = command(
        server,
        "seqcast",
        "run",
        "--task-runner",
        "dask",
        "--workers",
        "2",
        "--data-dir",
        str(tmp_path / "dask"),
        *common,
    )
    assert dask.returncode == 0, dask.stderr[-3000:]
    threads = command(server, "seqcast", "run", "--data-dir", str(tmp_path / "threads"), *common)
    assert threads.returncode == 0, threads.stderr[-3000:]

    def tables(folder: str) -> tuple[list, list, list]:
        with sqlite3.connect(tmp_path / folder / "seqcast.db") as conn:
            return (
                conn.execute(
                    "SELECT series_id, model_kind, period, yhat, yhat_lower, yhat_upper, is_champion "
                    "FROM forecasts ORDER BY model_kind, period"
                ).fetchall(),
                conn.execute(
                    "SELECT series_id, model_kind, mae, rmse, mape, smape, mase, is_champion "
                    "FROM metrics ORDER BY model_kind"
                ).fetchall(),
                conn.execute("SELECT COUNT(*), SUM(value) FROM observations").fetchall(),
            )

    assert tables("dask") == tables("threads")
    assert len(tables("dask")[0]) == 3 * 12  # fake and the two baselines


def test_dask_without_a_server_says_what_to_do(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    done = subprocess.run(
        [str(BIN / "seqcast"), "run", "--task-runner", "dask", "--data-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "needs a running Prefect server" in done.stderr and "prefect server start" in done.stderr


def test_a_run_without_a_server_starts_one_temporary_server_and_stops_it(tmp_path: Path) -> None:
    """`seqcast run` starts Prefect's temporary server (Prefect's own instance) before the flow; the flow uses
    that one, not a second, and Prefect stops it at the end."""
    env = {
        **{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"},
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_LOCAL_STORAGE_PATH": str(tmp_path / "prefect-home" / "storage"),
    }
    done = subprocess.run(
        [
            str(BIN / "seqcast"),
            "run",
            "--data-dir",
            str(tmp_path / "data"),
            "--model",
            "fake",
            "--statistical",
            "none",
            "--demo",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    log = done.stdout + done.stderr
    started = [line for line in log.splitlines() if "Starting temporary server on http://127.0.0.1:" in line]
    assert len(started) == 1, log[-3000:]
    assert log.count("Stopping temporary server") == 1
    assert "trained   air_passengers" in done.stdout
    port = int(started[0].rsplit(":", 1)[1].split()[0])
    with socket.socket() as sock:  # nothing listens there any more
        assert sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.browser
def test_the_runs_summary_artifact_shows_the_pages_headline_in_the_ui_and_links_only_within_it(
    server: dict[str, str], tmp_path: Path
) -> None:
    import re
    import sqlite3

    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    from tests.browser import rendered, screenshot

    data = tmp_path / "data"
    done = command(server, "seqcast", "run", "--data-dir", str(data), "--demo", *FAKE_ARGS)
    assert done.returncode == 0, done.stderr[-3000:]
    with sqlite3.connect(data / "seqcast.db") as conn:
        flow_run_id = conn.execute("SELECT flow_run_id FROM pipeline_runs").fetchone()[0]

    async def summary(client):
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), key=ArtifactFilterKey(any_=["run-summary"])
            )
        )
        return found[0]

    artifact = api(server, summary)
    page = Path(next(p for p in (data / "reports").glob("2*.html")))
    cards = re.findall(r'<div class="value">([^<]*)</div><div class="label">([^<]*)</div>', page.read_text())
    assert cards
    url = server["PREFECT_API_URL"].removesuffix("/api") + f"/artifacts/artifact/{artifact.id}"
    dom = rendered(url, budget_ms=20000)
    shown = re.sub(r"<[^>]+>", " ", dom)
    for value, label in cards:  # the same headline numbers as the report page
        assert re.search(rf"{re.escape(label)}\s+{re.escape(value)}", shown), (label, value)
    # What the summary links opens from the UI: only pages of the same server, never a file on another disk.
    summary_html = dom[dom.index("markdown-renderer") :]
    links = re.findall(r'<a [^>]*href="([^"]+)"', summary_html)
    assert all(link.startswith(("/", server["PREFECT_API_URL"].removesuffix("/api"))) for link in links), links
    assert "file:" not in summary_html
    image = screenshot(url, tmp_path / "artifact.png", width=1280, height=1600, budget_ms=20000)
    assert image.std() > 10  # a page was drawn, not a blank window
