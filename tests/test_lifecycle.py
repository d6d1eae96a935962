"""A run's life through the real command line, in a subprocess, as cron, CI or a supervisor calls it.

It leaves no process behind and closes its output pipes (success, failure, an error at start, Ctrl-C, SIGTERM,
even kill -9); SIGINT and SIGTERM during training stop it cleanly and a rerun finishes; of two runs started at
once, one runs. Some of these run with both cores busy (a CPU load generator), as on a shared CI machine.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

import psutil
import pytest

SEQCAST = str(Path(sys.executable).parent / "seqcast")
#: A model that trains until stopped: the tutorial's network with no early stopping and a million epochs.
ENDLESS = ["--demo", "--model", "lstm", "--preset", "tutorial", "--epochs", "1000000", "--statistical", "none"]
#: The deterministic stand-in model alone.
QUICK = ["--demo", "--model", "fake", "--statistical", "none"]
#: How long a stop may take (on a quiet machine, and with both cores busy), and the pipes' close after exit.
STOP_SECONDS, STOP_SECONDS_UNDER_LOAD = 10, 20
PIPES_SECONDS = 5


@contextmanager
def cpu_load() -> Iterator[None]:
    """Every core busy with a spinning process, for the duration."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def temporary_server_env(tmp_path: Path) -> dict[str, str]:
    """No Prefect server configured: the run starts Prefect's temporary one (in a private Prefect home)."""
    home = tmp_path / "prefect-home"
    return {
        **{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"},
        "PREFECT_HOME": str(home),
        "PREFECT_LOCAL_STORAGE_PATH": str(home / "storage"),
    }


def harness_env() -> dict[str, str]:
    """The session's test server, so that the run starts none of its own."""
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}


class Run:
    """`seqcast run ...` in its own process group (as a terminal or supervisor starts it), its output read
    as it comes, so that the test sees when the pipes close (EOF: no process holds them any more)."""

    def __init__(self, data_dir: Path, args: list[str], env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.proc = subprocess.Popen(
            [SEQCAST, "run", "--data-dir", str(data_dir), "-q", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.stdout: list[str] = []
        self.server_port: int | None = None  # of the temporary Prefect server, once seen
        self.stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(pipe: IO[str], into: list[str]) -> None:
        for line in pipe:
            into.append(line)

    @property
    def output(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)

    def error_lines(self) -> list[str]:
        return [line.rstrip("\n") for line in self.stderr if line.strip()]

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 300) -> None:
        """Wait for an event of the run (polling it), failing if the run ends first or it never comes."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                raise AssertionError(f"the run ended before {what}: {self.output[-3000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"{what}: not reached in {timeout} s")
            time.sleep(0.05)

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the run did not end within {timeout} s: {self.output[-3000:]}") from None

    def assert_no_debris(self, started: list[psutil.Process], pipes_seconds: float = PIPES_SECONDS) -> None:
        """Once the run has ended: its output pipes close within `pipes_seconds` and none of `started` is alive."""
        for reader in self._readers:
            reader.join(timeout=pipes_seconds)
        holders = self._pipe_holders() if any(r.is_alive() for r in self._readers) else []
        assert not any(r.is_alive() for r in self._readers), f"output pipes still open, held by {holders}"
        _, alive = psutil.wait_procs(started, timeout=pipes_seconds)
        assert alive == [], [p.cmdline() for p in alive]

    def _pipe_holders(self) -> list[str]:
        """The processes holding the run's output pipes (what outlived it), described for a failure message."""
        pipes = {
            f"pipe:[{os.fstat(pipe.fileno()).st_ino}]"
            for pipe in (self.proc.stdout, self.proc.stderr)
            if pipe is not None and not pipe.closed
        }
        holders = []
        for process in psutil.process_iter(["pid", "ppid", "status", "cmdline"]):
            with suppress(psutil.Error, OSError):
                fds = os.listdir(f"/proc/{process.pid}/fd")
                if any(os.readlink(f"/proc/{process.pid}/fd/{fd}") in pipes for fd in fds):
                    info = process.info
                    holders.append(f"{info['pid']} (parent {info['ppid']}, {info['status']}): {info['cmdline']}")
        return holders

    def kill(self) -> None:
        for process in [*self.descendants(), psutil.Process(self.proc.pid)]:
            with suppress(psutil.NoSuchProcess):
                process.kill()


def query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(sql).fetchall()


def training(data_dir: Path) -> Callable[[], bool]:
    """The run has ingested and written its snapshot: with ENDLESS, it is training from then on."""

    def ready() -> bool:
        lake = data_dir / "lake"
        return lake.is_dir() and any(lake.rglob("*.parquet"))

    return ready


def server_port(process: psutil.Process) -> int | None:
    """The port of Prefect's temporary server if `process` is one (uvicorn serving Prefect's API app)."""
    with suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        argv = process.cmdline()
        if "prefect.server.api.server:create_app" in argv and "--port" in argv:
            return int(argv[argv.index("--port") + 1])
    return None


def temporary_server(run: Run) -> Callable[[], bool]:
    """The run's temporary Prefect server (a child process of the run) answers; its port is noted on the run."""

    def up() -> bool:
        ports = [port for p in run.descendants() if (port := server_port(p)) is not None]
        assert len(ports) <= 1, ports  # one server, started by Prefect, never a second one
        if ports and listening(ports[0]):
            run.server_port = ports[0]
            return True
        return False

    return up


def listening(port: int | None) -> bool:
    assert port is not None, "the temporary server was never seen"
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize(
    "how",
    [
        pytest.param("SIGINT", id="ctrl-c-to-the-group-with-a-temporary-server"),
        pytest.param("SIGTERM", id="sigterm-under-cpu-load"),
    ],
)
def test_a_signal_during_training_stops_the_run_cleanly_and_a_rerun_finishes(
    tmp_path: Path, how: str, prefect_harness: None
) -> None:
    data_dir = tmp_path / "data"
    if how == "SIGINT":  # what Ctrl-C in a terminal does: every process of the group gets SIGINT
        env = temporary_server_env(tmp_path)
        exit_code, said = 130, "error: interrupted: nothing of this run was published"
    else:  # what systemd, Kubernetes or a Prefect worker's cancellation sends to the run's process
        env = harness_env()
        exit_code, said = 143, "error: stopped by SIGTERM: nothing of this run was published"
    with cpu_load() if how == "SIGTERM" else _nothing():
        run = Run(data_dir, ENDLESS, env)
        run.wait_for(training(data_dir), "training")
        if how == "SIGINT":
            run.wait_for(temporary_server(run), "the temporary server")
        started = run.descendants()
        assert started, "the run trains in worker processes"
        signalled = time.monotonic()
        if how == "SIGINT":
            os.killpg(run.proc.pid, signal.SIGINT)
        else:
            run.proc.send_signal(signal.SIGTERM)
        limit = STOP_SECONDS_UNDER_LOAD if how == "SIGTERM" else STOP_SECONDS
        code = run.wait(timeout=limit)
        stopped_in = time.monotonic() - signalled
        run.assert_no_debris(started)

    assert code == exit_code, run.output[-3000:]
    assert stopped_in <= limit
    lines = run.error_lines()
    assert len(lines) == 1 and lines[0].startswith(said), lines
    assert "Traceback" not in run.output
    db = data_dir / "seqcast.db"
    assert query(db, "SELECT status FROM pipeline_runs") == [("interrupted",)]
    assert query(db, "SELECT COUNT(*) FROM latest_forecasts") == [(0,)]  # nothing half-published
    if how == "SIGINT":
        assert not listening(run.server_port)

    rerun = Run(data_dir, ["--model", "fake", "--statistical", "none"], harness_env())
    assert rerun.wait(timeout=300) == 0, rerun.output[-3000:]
    rerun.assert_no_debris([])
    assert query(db, "SELECT status FROM pipeline_runs ORDER BY started_at") == [("interrupted",), ("completed",)]
    assert query(db, "SELECT COUNT(*) FROM observations") == [(144,)]  # what the first run ingested, kept
    assert len(query(db, "SELECT * FROM latest_forecasts")) > 0


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def test_a_run_under_cpu_load_uses_one_temporary_server_and_leaves_nothing(tmp_path: Path) -> None:
    with cpu_load():
        run = Run(tmp_path / "data", QUICK, temporary_server_env(tmp_path))
        run.wait_for(temporary_server(run), "the temporary server")
        started = run.descendants()
        assert run.wait(timeout=600) == 0, run.output[-3000:]
        run.assert_no_debris(started)
    assert "trained   air_passengers" in "".join(run.stdout)
    assert not listening(run.server_port)


def test_a_failed_run_and_an_error_at_start_leave_nothing(tmp_path: Path) -> None:
    # Fails after its server started: a file of the inbox is rejected (exit status 2).
    inbox = tmp_path / "data" / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "broken.csv").write_text("series_id;period;value\nx;2020-01;1\n")
    failed = Run(tmp_path / "data", QUICK, temporary_server_env(tmp_path))
    failed.wait_for(temporary_server(failed), "the temporary server")
    started = failed.descendants()
    assert failed.wait(timeout=600) == 2, failed.output[-3000:]
    failed.assert_no_debris(started)
    assert failed.error_lines()[-1].startswith("error: 1 file(s) rejected; first: broken.csv")
    assert not listening(failed.server_port)

    # An error at start: a bad option, one line, nothing started.
    bad = Run(tmp_path / "other", ["--model", "nope"], temporary_server_env(tmp_path))
    assert bad.wait(timeout=120) != 0
    bad.assert_no_debris([])
    lines = bad.error_lines()
    assert len(lines) == 1 and "unknown model kind 'nope'" in lines[0], lines


def test_kill_9_of_a_run_leaves_no_temporary_server_behind(tmp_path: Path) -> None:
    """A killed process stops nothing itself: the sentinel it started beside it stops what it left."""
    run = Run(tmp_path / "data", ENDLESS, temporary_server_env(tmp_path))
    run.wait_for(training(tmp_path / "data"), "training")
    run.wait_for(temporary_server(run), "the temporary server")
    port = run.server_port
    assert port is not None
    started = run.descendants()
    assert any("uvicorn" in " ".join(p.cmdline()) for p in started)
    os.kill(run.proc.pid, signal.SIGKILL)
    assert run.wait(timeout=60) == -signal.SIGKILL
    # The sentinel notices within a second, then allows the server its graceful stop.
    run.assert_no_debris(started, pipes_seconds=30)
    assert not listening(port)


def test_two_runs_started_at_once_one_runs_and_the_other_says_so(tmp_path: Path, prefect_harness: None) -> None:
    data_dir = tmp_path / "data"
    runs = [Run(data_dir, QUICK, harness_env()) for _ in range(2)]
    codes = sorted(run.wait(timeout=600) for run in runs)
    assert codes == [0, 1], [run.output[-2000:] for run in runs]
    loser = next(run for run in runs if run.proc.returncode == 1)
    lines = loser.error_lines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: a seqcast run is already in progress on {data_dir} (pid ")
    assert lines[0].endswith("); this one did not start")
    assert query(data_dir / "seqcast.db", "SELECT status FROM pipeline_runs") == [("completed",)]


def test_a_stray_two_column_file_is_named_can_be_sent_again_under_its_series_and_no_series_costs_a_traceback(
    tmp_path: Path, prefect_harness: None
) -> None:
    data_dir = tmp_path / "data"
    first = Run(data_dir, QUICK, harness_env())
    assert first.wait(timeout=600) == 0, first.output[-3000:]

    # A month sent as its own two-column file: a new one-row series, named after the file, and the message says so.
    stray = tmp_path / "air_passengers_1961-01.csv"
    stray.write_text("period,value\n1961-01,450\n")
    # A series that cannot be trained (a month missing) comes in beside it.
    gap = tmp_path / "gap.csv"
    gap.write_text("series_id,period,value\ngap,2020-01,1\ngap,2020-02,2\ngap,2020-04,3\ngap,2020-05,4\n")
    quick = ["--model", "fake", "--statistical", "none"]
    run = Run(data_dir, ["--source", str(stray), "--source", str(gap), *quick], harness_env())
    assert run.wait(timeout=600) == 0, run.output[-3000:]
    out = "".join(run.stdout)
    assert "air_passengers_1961-01.csv: 1 rows read, 1 new" in out and "(series air_passengers_1961-01)" in out
    gap_lines = [line for line in run.output.splitlines() if "gap" in line and "missing month" in line]
    assert gap_lines == [
        "skipped   gap: 1 missing month(s) between 2020-01-01 and 2020-05-01; send them, or run with fill_gaps "
        "to interpolate"
    ]
    assert "Traceback" not in run.output
    assert run.error_lines() == []  # (-q: the terminal shows warnings and errors; there were none to show)

    # The same bytes again, now under the series they belong to: stored, not "already ingested".
    again = Run(data_dir, ["--source", str(stray), "--series-id", "air_passengers", *quick], harness_env())
    assert again.wait(timeout=600) == 0, again.output[-3000:]
    assert "1 rows read, 1 new" in "".join(again.stdout) and "(series air_passengers)" in "".join(again.stdout)
    db = data_dir / "seqcast.db"
    assert query(db, "SELECT COUNT(*) FROM observations WHERE series_id = 'air_passengers'") == [(145,)]
    assert query(db, "SELECT COUNT(*) FROM observations WHERE series_id = 'air_passengers_1961-01'") == [(1,)]
