"""Faults on the real flow: kill -9 mid-run, two runs at once, transient failures, a briefly locked database."""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from flows.monthly_forecast import monthly_forecast
from seqcast import _files, stages, store
from seqcast.config import RunConfig
from seqcast.store import writes as store_writes
from tests.conftest import FAKE

pytestmark = pytest.mark.usefixtures("prefect_harness")

CLI = [sys.executable, "-m", "seqcast"]


def query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(sql).fetchall()


def cli_env() -> dict[str, str]:
    """The child talks to this session's test server instead of starting its own."""
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}


def start_run(data_dir: Path, *extra: str) -> subprocess.Popen:
    args = [*CLI, "run", "--data-dir", str(data_dir), "--model", "lstm", "--model", "gru", "--preset", "local",
            "--demo", "-q", *extra]  # fmt: skip
    return subprocess.Popen(args, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"run ended before the kill point: {proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("kill point not reached in time")
        time.sleep(0.05)


def running_row(db: Path) -> bool:
    try:
        return query(db, "SELECT COUNT(*) FROM pipeline_runs WHERE status = 'running'")[0][0] > 0
    except sqlite3.Error:
        return False


@pytest.mark.parametrize("kill_point", ["run-started", "first-model-saved"])
def test_kill_9_mid_run_then_rerun_completes_and_reuses_finished_work(tmp_path: Path, kill_point: str) -> None:
    data_dir = tmp_path / "data"
    db = data_dir / "seqcast.db"
    proc = start_run(data_dir)
    if kill_point == "run-started":
        wait_for(lambda: running_row(db), proc)
    else:
        wait_for(lambda: any((data_dir / "models").glob("*.pt")) if (data_dir / "models").exists() else False, proc)
    children = psutil.Process(proc.pid).children(recursive=True)  # training processes, if started
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    # Nothing the killed run started lives on (its training processes notice and exit).
    _, alive = psutil.wait_procs(children, timeout=15)
    assert alive == [], [p.cmdline() for p in alive]
    saved = {p.name: p.stat().st_mtime_ns for p in (data_dir / "models").glob("*.pt")}
    assert query(db, "SELECT COUNT(*) FROM latest_forecasts") == [(0,)]  # nothing half-published

    outcome = monthly_forecast(
        RunConfig(data_dir=str(data_dir), models=["lstm", "gru"], preset="local", use_bundled_demo=True)
    )

    assert query(db, "SELECT status FROM pipeline_runs ORDER BY started_at") == [("interrupted",), ("completed",)]
    assert len(query(db, "SELECT * FROM latest_forecasts")) == 12
    assert list(outcome["outcome"].trained) == ["air_passengers"]
    # What the killed run finished is loaded, not retrained.
    for name, mtime in saved.items():
        assert (data_dir / "models" / name).stat().st_mtime_ns == mtime
    assert query(db, "SELECT COUNT(*) FROM observations") == [(144,)]


def test_two_runs_at_once_one_runs_the_other_says_why(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = start_run(data_dir)
    wait_for(lambda: running_row(data_dir / "seqcast.db"), first)
    second = subprocess.run(
        [*CLI, "run", "--data-dir", str(data_dir), "-q"], env=cli_env(), capture_output=True, text=True, timeout=300
    )
    assert first.wait(timeout=300) == 0, first.stderr.read() if first.stderr else ""
    assert second.returncode == 1
    lines = [line for line in second.stderr.strip().splitlines() if line.strip()]
    assert lines == [
        f"error: a seqcast run is already in progress on {data_dir} (pid {first.pid}); this one did not start"
    ]
    assert "Traceback" not in second.stderr
    db = data_dir / "seqcast.db"
    assert query(db, "SELECT status FROM pipeline_runs") == [("completed",)]
    assert query(db, "SELECT COUNT(*) FROM observations") == [(144,)]


def test_a_transient_failure_in_a_stage_is_retried_and_the_run_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"publish": 0, "snapshot": 0}
    real_publish, real_snapshot = stages.publish_stage, stages.snapshot_stage

    def flaky_publish(*args, **kwargs):
        calls["publish"] += 1
        if calls["publish"] == 1:
            raise sqlite3.OperationalError("database is locked")
        return real_publish(*args, **kwargs)

    def flaky_snapshot(*args, **kwargs):
        calls["snapshot"] += 1
        if calls["snapshot"] == 1:
            raise OSError("transient read error")
        return real_snapshot(*args, **kwargs)

    monkeypatch.setattr(stages, "PUBLISH", dataclasses.replace(stages.PUBLISH, fn=flaky_publish))
    monkeypatch.setattr(stages, "SNAPSHOT", dataclasses.replace(stages.SNAPSHOT, fn=flaky_snapshot))
    outcome = monthly_forecast(RunConfig(data_dir=str(tmp_path / "data"), global_steps=100, use_bundled_demo=True))
    assert calls == {"publish": 2, "snapshot": 2}
    assert outcome["task_states"]["publish"] == "Completed"
    assert outcome["task_states"]["snapshot"] == "Completed"
    assert len(query(tmp_path / "data" / "seqcast.db", "SELECT * FROM latest_forecasts")) == 12


def test_a_briefly_locked_database_is_waited_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "data"
    config = RunConfig(data_dir=str(data_dir), **FAKE)
    monthly_forecast(config)
    (data_dir / "inbox" / "air_passengers.csv").write_text("Month,#Passengers\n1961-01,450\n")

    locked, attempting, released = threading.Event(), threading.Event(), threading.Event()
    met_the_lock: list[bool] = []
    real_start = store_writes.start_run

    def start_run(*args, **kwargs):  # the run's first write
        met_the_lock.append(locked.is_set() and not released.is_set())
        attempting.set()
        return real_start(*args, **kwargs)

    monkeypatch.setattr(store_writes, "start_run", start_run)
    monkeypatch.setattr(store, "start_run", start_run)

    def hold_lock() -> None:
        conn = sqlite3.connect(data_dir / "seqcast.db", isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        locked.set()
        attempting.wait(timeout=300)  # the run is about to write: it meets the lock, then waits it out
        released.set()
        conn.execute("COMMIT")
        conn.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    locked.wait(timeout=300)
    outcome = monthly_forecast(config)
    holder.join()
    assert met_the_lock == [True]
    assert outcome["outcome"].new_observations == 1
    assert query(data_dir / "seqcast.db", "SELECT status FROM pipeline_runs ORDER BY started_at") == [
        ("completed",),
        ("completed",),
    ]


def test_a_failed_write_leaves_neither_target_nor_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"

    def crash(tmp: Path) -> None:
        tmp.write_bytes(b"half a fi")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _files.atomic_write(target, crash)
    assert list(tmp_path.iterdir()) == []
    _files.atomic_write(target, lambda tmp: tmp.write_bytes(b"whole"))
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]
