"""Against a real `prefect server` on loopback: runs, task states, artifacts, schedules, a deployment run,
secrets that never reach the server, and failure alerts to a webhook receiver.

Reads the server's API as the UI does. The server, its PREFECT_HOME and every child process belong to
this test and are stopped by process id at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_LOCAL_STORAGE_PATH": str(home / "storage"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
        # The UI's pages call the API at this address (by default it assumes port 4200).
        "PREFECT_UI_API_URL": url,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "w")  # noqa: SIM115 - open for the server's lifetime
    proc = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise AssertionError(f"prefect server did not start: {(home / 'server.log').read_text()[-2000:]}")
        time.sleep(0.3)
    try:
        yield {**env, "PREFECT_API_URL": url}
    finally:
        stop(proc)
        log.close()
    assert proc.poll() is not None


def api(env: dict[str, str], coro_fn):
    """Run `coro_fn(client)` against this test's server."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def go():
        with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
            async with get_client() as client:
                return await coro_fn(client)

    return asyncio.run(go())


def command(env: dict[str, str], program: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run an installed command (`seqcast`, `prefect`) from the repository root against this server."""
    return subprocess.run(
        [str(BIN / program), *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


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


FAKE_ARGS = ("--model", "fake", "--statistical", "none", "-q")
#: A password that must never reach the Prefect server, the database, the data folder or the terminal (the test
#: server trusts loopback connections, so the password is sent and ignored).
PASSWORD = "Pw-4b1d-never-shown"


@contextlib.contextmanager
def database_with_password(postgres_server: str) -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL database: its URL, and the same URL with PASSWORD in it."""
    import sqlalchemy as sa

    from tests.conftest import fresh_pg_database

    with fresh_pg_database(postgres_server) as url:
        yield url, sa.engine.make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


def everything_the_server_holds(env: dict[str, str]) -> str:
    """Every flow run (with its parameters), task run, log line, artifact and deployment on the server, as text."""

    async def read(client):
        parts = [r.model_dump_json() for r in await client.read_flow_runs(limit=200)]
        parts += [t.model_dump_json() for t in await client.read_task_runs(limit=200)]
        parts += [a.model_dump_json() for a in await client.read_artifacts(limit=200)]
        parts += [d.model_dump_json() for d in await client.read_deployments(limit=200)]
        offset = 0
        while logs := await client.read_logs(limit=200, offset=offset):
            parts += [log.model_dump_json() for log in logs]
            offset += len(logs)
        return "\n".join(parts)

    return api(env, read)


def assert_nowhere(secret: str, *, server_env: dict[str, str], data_dir: Path, db_url: str, said: str) -> None:
    import sqlalchemy as sa

    held = everything_the_server_holds(server_env)
    assert "monthly-forecast" in held  # (the runs are there to be read)
    assert secret not in held
    assert secret not in said
    for path in data_dir.rglob("*"):  # lake, models, plots, the HTML report, task results
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            rows = conn.execute(sa.text(f'SELECT * FROM "{table}"')).fetchall()  # names from the catalogue
            assert secret not in repr(rows), table
        configs = [row[0] for row in conn.execute(sa.text("SELECT config_json FROM pipeline_runs"))]
    engine.dispose()
    assert configs and all("***" in c or 'db_url": null' in c for c in configs), configs


def test_a_database_password_reaches_no_parameter_log_artifact_table_report_or_terminal(
    server: dict[str, str], tmp_path: Path, postgres_server: str
) -> None:
    data_dir = tmp_path / "data"
    with database_with_password(postgres_server) as (_, with_password):
        given = command(
            server, "seqcast", "run", "--data-dir", str(data_dir), "--db-url", with_password, *FAKE_ARGS, "--demo"
        )
        assert given.returncode == 0, given.stderr[-3000:]
        from_env = command(
            {**server, "SEQCAST_DB_URL": with_password}, "seqcast", "run", "--data-dir", str(data_dir), *FAKE_ARGS
        )
        assert from_env.returncode == 0, from_env.stderr[-3000:]
        assert "reused    air_passengers" in from_env.stdout  # the same database, found through the variable
        said = given.stdout + given.stderr + from_env.stdout + from_env.stderr
        assert_nowhere(PASSWORD, server_env=server, data_dir=data_dir, db_url=with_password, said=said)


def test_a_deployment_takes_its_database_url_from_a_secret_block(
    server: dict[str, str], tmp_path: Path, postgres_server: str
) -> None:
    """What a deployment does: its parameters name a Secret block; the URL itself is read at run time."""
    import sqlalchemy as sa

    data_dir = tmp_path / "data"
    with database_with_password(postgres_server) as (url, with_password):
        script = (
            "import sys\n"
            "from prefect.blocks.system import Secret\n"
            "from flows.monthly_forecast import monthly_forecast\n"
            "from seqcast.config import RunConfig\n"
            "Secret(value=sys.argv[1]).save('seqcast-test-db', overwrite=True)\n"
            "config = RunConfig(data_dir=sys.argv[2], db_url_secret='seqcast-test-db', models=['fake'],\n"
            "                   statistical=[], use_bundled_demo=True)\n"
            "assert len(monthly_forecast(config)['outcome'].trained) == 1\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script, with_password, str(data_dir)],
            env=server,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        with sa.create_engine(url).connect() as conn:  # the run wrote to the database the block names
            assert conn.execute(sa.text("SELECT COUNT(*) FROM latest_forecasts")).scalar() == 12
        assert_nowhere(PASSWORD, server_env=server, data_dir=data_dir, db_url=url, said=done.stdout + done.stderr)


class Receiver:
    """A webhook receiver on 127.0.0.1: the JSON bodies POSTed to it, and an event set at the first one."""

    def __init__(self) -> None:
        import http.server
        import json
        import threading

        self.bodies: list[dict] = []
        self.received = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                outer.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()
                outer.received.set()

            def log_message(self, *args: object) -> None:
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/hook?token=abc"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


#: A run that fails after it started: its snapshot stage raises (the stage replaced in the flow's process).
FAILING_RUN = (
    "import dataclasses, sys\n"
    "from seqcast import stages\n"
    "from flows.monthly_forecast import monthly_forecast\n"
    "from seqcast.config import RunConfig\n"
    "def broken(*args):\n"
    "    raise RuntimeError('the snapshot is broken on purpose')\n"
    "stages.SNAPSHOT = dataclasses.replace(stages.SNAPSHOT, fn=broken, io=False)  # (io=False: no retries)\n"
    "config = RunConfig(data_dir=sys.argv[1], models=['fake'], statistical=[], use_bundled_demo=True)\n"
    "try:\n"
    "    monthly_forecast(config)\n"
    "except Exception:\n"
    "    sys.exit(3)\n"
)


@pytest.mark.parametrize("configured", ["url", "secret block"])
def test_a_failed_run_notifies_the_configured_webhook(server: dict[str, str], tmp_path: Path, configured: str) -> None:
    receiver = Receiver()
    try:
        if configured == "url":
            env = {**server, "SEQCAST_ALERT_WEBHOOK": receiver.url}
        else:
            setup = (
                "import sys\nfrom prefect.blocks.system import Secret\n"
                "Secret(value=sys.argv[1]).save('seqcast-test-hook', overwrite=True)\n"
            )
            saved = subprocess.run([sys.executable, "-c", setup, receiver.url], env=server, timeout=120, cwd=ROOT)
            assert saved.returncode == 0
            env = {**server, "SEQCAST_ALERT_WEBHOOK_SECRET": "seqcast-test-hook"}
        done = subprocess.run(
            [sys.executable, "-c", FAILING_RUN, str(tmp_path / "data")],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
        )
        assert done.returncode == 3, done.stderr[-3000:]
        assert receiver.received.wait(timeout=60)  # (sent by the flow's failure hook before the process exits)
    finally:
        receiver.close()
    [body] = receiver.bodies
    assert body["flow"] == "monthly-forecast" and body["state"] == "Failed"
    assert body["flow_run"].startswith("monthly-forecast-20")
    assert "the snapshot is broken on purpose" in body["message"]
    assert "token=abc" not in everything_the_server_holds(server)  # the webhook URL is a credential too


#: Saves a Prefect Webhook block calling the URL given (a receiver on loopback: private URLs allowed).
WEBHOOK_BLOCK = (
    "import sys\nfrom prefect.blocks.webhook import Webhook\n"
    "Webhook(url=sys.argv[1], allow_private_urls=True).save(sys.argv[2], overwrite=True)\n"
)


def test_a_degraded_series_emits_an_event_the_sample_automation_sends_to_a_webhook(
    server: dict[str, str], tmp_path: Path
) -> None:
    import pandas as pd

    from tests.conftest import synthetic_panel

    receiver = Receiver()
    try:
        saved = subprocess.run(
            [sys.executable, "-c", WEBHOOK_BLOCK, receiver.url, "seqcast-test-degraded"], env=server, timeout=120
        )
        assert saved.returncode == 0
        created = command(server, "seqcast", "automation", "--webhook-block", "seqcast-test-degraded")
        assert created.returncode == 0, created.stderr[-3000:]
        assert "seqcast-series-degraded" in created.stdout

        panel = synthetic_panel(3, months=60)
        panel["period"] = pd.to_datetime(panel["period"]).dt.strftime("%Y-%m")
        head = tmp_path / "head.csv"
        panel.groupby("series_id").head(48).to_csv(head, index=False)
        # s001 breaks: its next three months are three times anything its history promised.
        later = panel.groupby("series_id").nth([48, 49, 50])
        later = later.assign(value=later["value"].where(later["series_id"] != "s001", later["value"] * 3))
        jump = tmp_path / "jump.csv"
        later.to_csv(jump, index=False)
        data = str(tmp_path / "data")
        # (The first run needs no Prefect: the event comes from the second.)
        for source, how in ((head, ["--orchestrator", "none"]), (jump, [])):
            done = command(server, "seqcast", "run", "--data-dir", data, "--source", str(source), *how, *FAKE_ARGS)
            assert done.returncode == 0, done.stderr[-3000:]
        assert "s001" in done.stdout and "degraded" in done.stdout  # the summary says so too
        # The event goes to the server, its trigger fires, the action calls the webhook: wait on the call itself.
        assert receiver.received.wait(timeout=180), "the automation did not call the webhook"
    finally:
        receiver.close()
    [body] = receiver.bodies
    assert body["event"] == "seqcast.series.degraded" and body["series_id"] == "s001"
    assert body["reason"].startswith("degraded: ") and body["run_id"]


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
