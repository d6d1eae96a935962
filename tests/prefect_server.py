"""A real `prefect server` on loopback for the tests that read what the UI shows, and helpers to talk to it.

The `server` fixture (tests/conftest.py) starts one per test module that asks for it. The server, its
PREFECT_HOME and every child process belong to that module and are stopped by process id at the end.
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


@contextlib.contextmanager
def running_server(home: Path, startup_seconds: float) -> Iterator[dict[str, str]]:
    """Start `prefect server` with its home in `home`; yield the environment a client or command needs."""
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
    deadline = time.monotonic() + startup_seconds
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
