"""Engines: one per database URL and process, the schema brought to the newest migration once, SQLite tuned.

Readers (`reader`) never write: they open a SQLite file read-only (or, in a read-only folder, as immutable)
and never migrate, so a read-only copy of a data folder can be queried.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.engine.url import URL

from seqcast.store.schema import meta_table

log = logging.getLogger(__name__)

#: The newest migration (tests check it against `migrations/versions`).
HEAD = "0004"
#: The first migration: databases created before migrations existed hold exactly its schema.
BASELINE = "0001"
MIGRATIONS = Path(__file__).parent / "migrations"

_lock = threading.Lock()
_engines: dict[tuple[int, str], Engine] = {}


def as_url(url: str | URL) -> URL:
    return url if isinstance(url, URL) else make_url(url)


def sqlite_url(path: Path) -> URL:
    """The URL of a SQLite file, built with the URL API (a `?` or `%` in the path stays part of the path)."""
    return URL.create("sqlite", database=str(path))


def redacted(url: str | URL) -> str:
    """A database URL without its password, for humans and logs."""
    return as_url(url).render_as_string(hide_password=True)


def _key(url: URL) -> tuple[int, str]:
    return os.getpid(), url.render_as_string(hide_password=False)


def engine(url: str | URL) -> Engine:
    """This process's engine for `url`, the schema migrated to the newest version on first use."""
    url = as_url(url)
    key = _key(url)
    with _lock:
        existing = _engines.get(key)
        if existing is not None:
            return existing
        created = _create(url)
        try:
            ensure_schema(created)
        except BaseException:
            created.dispose()
            raise
        _engines[key] = created
        return created


def dispose(url: str | URL | None = None) -> None:
    """Close this process's engine for `url` (all of them with None); the next `engine` call opens anew."""
    with _lock:
        keys = [k for k in _engines if url is None or k == _key(as_url(url))]
        for k in keys:
            _engines.pop(k).dispose()


def reader(url: str | URL) -> Engine:
    """A read-only engine (the caller disposes it). Creates nothing and migrates nothing.

    Raises FileNotFoundError when a SQLite database does not exist.
    """
    url = as_url(url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return sa.create_engine(url, pool_pre_ping=True)
    path = Path(url.database)
    if not path.exists():
        raise FileNotFoundError(f"no database at {path}")
    target = quote(str(path.resolve()))

    def connect(flags: str) -> Any:
        conn = sqlite3.connect(f"file:{target}?{flags}", uri=True, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn

    try:  # read-only, beside writers (WAL)
        connect("mode=ro").close()
        flags = "mode=ro"
    except sqlite3.OperationalError:  # a read-only folder: WAL's shared-memory file cannot be made there
        flags = "mode=ro&immutable=1"
    return sa.create_engine("sqlite://", creator=lambda: connect(flags), pool_pre_ping=False)


def _create(url: URL) -> Engine:
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    created = sa.create_engine(url)
    database = url.database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    _tune_sqlite(created)
    return created


def ensure_schema(target: Engine) -> None:
    """Bring the database to the newest migration: new ones are created, older ones upgraded in place.

    Processes starting at once take turns (an advisory lock on PostgreSQL, the write lock on SQLite).
    """
    with target.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(74656174)")
        current = _revision(conn)
        if current != HEAD:
            _migrate(conn, current)
        row = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == "store_id")).first()
        if row is None:
            conn.execute(
                meta_table.insert(),
                [
                    {"key": "store_id", "value": uuid.uuid4().hex},
                    {"key": "data_version", "value": "0"},
                ],
            )


def _revision(conn: Connection) -> str | None:
    tables = set(sa.inspect(conn).get_table_names())
    if "alembic_version" in tables:
        return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    # Before migrations: a database of release 0.1 holds the baseline's schema.
    return "legacy" if "seqcast_meta" in tables else None


def _migrate(conn: Connection, current: str | None) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    if current == "legacy":
        command.stamp(config, BASELINE)
        log.info("database created before migrations: stamped at %s", BASELINE)
    command.upgrade(config, "head")


def _tune_sqlite(target: Engine) -> None:
    @event.listens_for(target, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        # busy_timeout waits out short locks; WAL lets SQL consumers read while a run writes.
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA page_size=8192")  # takes effect on a new database only; fewer, fuller pages
        _use_wal(cur)
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache for bulk ingest
        cur.close()
        # Transactions are begun by SQLAlchemy (below), not guessed by the driver, so DDL is transactional too.
        dbapi_conn.isolation_level = None

    @event.listens_for(target, "begin")
    def _on_begin(conn: Connection) -> None:
        # BEGIN IMMEDIATE (asked for with execution option sqlite_begin) takes the write lock up front.
        conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', '')}".strip())


def _use_wal(cur: Any, attempts: int = 200) -> None:
    """Switch the database to WAL once. Connections opening a new file at the same moment all try to, and
    that switch does not wait on the busy timeout: retry briefly until one of them has made it."""
    for attempt in range(attempts):
        try:
            if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if attempt == attempts - 1 or "locked" not in str(exc):
                raise
            time.sleep(0.05)
