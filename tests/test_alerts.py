"""Against a real `prefect server` on loopback: failure alerts and events reach a webhook receiver, and secrets
(a database password, a webhook URL) reach no parameter, log, artifact, table, report or terminal.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.prefect_server import FAKE_ARGS, PASSWORD, ROOT, command, database_with_password, everything_the_server_holds

pytestmark = pytest.mark.server


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
