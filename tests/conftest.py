"""Shared fixtures. Prefect is isolated per session before it is imported anywhere."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Before any prefect import: a private home and result store, no server from the environment.
_PREFECT_HOME = Path(tempfile.mkdtemp(prefix="seqcast-prefect-"))
os.environ["PREFECT_HOME"] = str(_PREFECT_HOME)
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(_PREFECT_HOME / "storage")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_EXTRA_LOGGERS"] = "seqcast"
# Library logs outside a flow run (plain-library tests) are not for the API.
os.environ["PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"] = "ignore"
os.environ.pop("PREFECT_API_URL", None)
# How long a Prefect server may take to start (the session's, and a run's temporary one): minutes when busy.
SERVER_STARTUP_SECONDS = 300
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = str(SERVER_STARTUP_SECONDS)
for _name in [k for k in os.environ if k.startswith("SEQCAST_") and not k.startswith("SEQCAST_TEST_")]:
    os.environ.pop(_name)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from seqcast.config import RunConfig  # noqa: E402
from seqcast.ingest import bundled_series_path  # noqa: E402

#: Few epochs keep the suite fast; the models still learn the seasonal shape.
FAST = {"epochs": 40, "use_bundled_demo": True}
#: Orchestration, not numerics: the deterministic stand-in model alone (baselines beside it).
FAKE = {"models": ["fake"], "statistical": [], "use_bundled_demo": True}


@pytest.fixture(scope="session")
def prefect_harness():
    """One real Prefect test server for the whole session (seconds to start on a quiet machine, more than a
    minute with every core busy)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=SERVER_STARTUP_SECONDS):
        yield


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real `prefect server` on loopback, one per test module that asks: the environment that reaches it."""
    from tests.prefect_server import running_server

    with running_server(tmp_path_factory.mktemp("prefect-home"), SERVER_STARTUP_SECONDS) as env:
        yield env


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> str:
    """A PostgreSQL server URL: SEQCAST_TEST_PG_URL, or a throwaway server started by .ci/postgres.sh.

    The script replaces any server it started before, so under xdist the first worker to need one starts it
    and the others wait for it and share it: a second start would end every connection the first one serves.
    """
    url = os.environ.get("SEQCAST_TEST_PG_URL")
    if url:
        return url
    if worker_id == "master":
        return _start_postgres()
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent  # the same folder for every worker of this session
    with FileLock(shared / "postgres.lock"):
        known = shared / "postgres.url"
        if not known.exists():
            known.write_text(_start_postgres())
        return known.read_text()


def _start_postgres() -> str:
    script = Path(__file__).resolve().parents[1] / ".ci" / "postgres.sh"
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(
            "PostgreSQL tests need a server: set SEQCAST_TEST_PG_URL=postgresql+psycopg://user@host:port/db "
            f"or let .ci/postgres.sh start one (it failed: {done.stderr.strip()[-500:]})"
        )
    return done.stdout.strip().rsplit("=", 1)[-1]


@contextmanager
def fresh_pg_database(server: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server, dropped afterwards; yields its URL."""
    import sqlalchemy as sa

    name = f"seqcast_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")  # name is generated here, never user input
    try:
        yield sa.engine.make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path):
    """Each test gets an empty database: a SQLite file, or a fresh PostgreSQL database."""
    from seqcast import store

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        yield url
        store.dispose(url)
        return
    with fresh_pg_database(request.getfixturevalue("postgres_server")) as url:
        yield url
        store.dispose(url)  # before the database is dropped


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "seqcast-data"


@pytest.fixture
def fast_config(data_dir: Path) -> RunConfig:
    return RunConfig(data_dir=str(data_dir), **FAST)


@pytest.fixture(scope="session")
def air() -> pd.DataFrame:
    """The bundled series as a long frame."""
    raw = pd.read_csv(bundled_series_path())
    return pd.DataFrame(
        {
            "series_id": "air_passengers",
            "period": pd.to_datetime(raw["Month"]).astype("datetime64[us]"),
            "value": raw["#Passengers"].astype(float),
        }
    )


def synthetic_panel(n_series: int, months: int = 60, seed: int = 0) -> pd.DataFrame:
    """Seasonal series with trend and noise, in the long form."""
    rng = np.random.default_rng(seed)
    periods = pd.date_range("2015-01-01", periods=months, freq="MS")
    frames = []
    for i in range(n_series):
        t = np.arange(months)
        level = 100 + 20 * i
        values = level * (1 + 0.01 * t) * (1 + 0.2 * np.sin(2 * np.pi * t / 12)) + rng.normal(0, 2, months)
        frames.append(pd.DataFrame({"series_id": f"s{i:03d}", "period": periods, "value": values.round(3)}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def panel_csv(tmp_path: Path) -> Path:
    path = tmp_path / "panel.csv"
    frame = synthetic_panel(3)
    frame.assign(period=frame["period"].dt.strftime("%Y-%m-%d")).to_csv(path, index=False)
    return path


@contextmanager
def mounted_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A small file system of its own at `folder` (a tmpfs; mounting needs root, as in CI)."""
    if os.geteuid() != 0:
        pytest.fail("this test mounts a small tmpfs and needs root (CI runs as root); run it as root")
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


@contextmanager
def read_only_copy(source: Path, target: Path) -> Iterator[Path]:
    """A copy of a folder that cannot be written: permissions for a user, a read-only mount for root (whom
    permissions do not stop)."""
    if os.geteuid() == 0:
        with mounted_tmpfs(target, "64m"):
            shutil.copytree(source, target, dirs_exist_ok=True)
            subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True)
            yield target
        return
    shutil.copytree(source, target)
    paths = [p for p in target.rglob("*")] + [target]
    for path in paths:
        path.chmod(stat.S_IRUSR | stat.S_IXUSR if path.is_dir() else stat.S_IRUSR)
    try:
        yield target
    finally:
        for path in paths:
            path.chmod(stat.S_IRWXU)


def metrics_frame(outcome) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    """A run outcome's metric rows as a frame (series_id, model_kind, is_champion, mae ... mase), sorted."""
    import dataclasses

    rows = [
        {"series_id": m.series_id, "model_kind": m.model_kind, "is_champion": m.is_champion,
         **dataclasses.asdict(m.scores)}
        for m in outcome.metrics
    ]  # fmt: skip
    return pd.DataFrame(rows).sort_values(["series_id", "model_kind"]).reset_index(drop=True)
