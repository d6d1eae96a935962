"""The store's schema: migrations build exactly the declared schema, upgrade older databases in place,
and readers work on read-only copies."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlalchemy as sa

from seqcast import store
from seqcast.store import schema
from tests.conftest import fresh_pg_database, read_only_copy

RELEASE_01 = Path(__file__).parent / "data" / "release-0.1.sql"
#: The columns `latest_forecasts` had in release 0.1 (later ones are added after them).
V01_COLUMNS = (
    "run_id, series_id, model_kind, origin, period, step, yhat, yhat_lower, yhat_upper, interval_level, model_id"
)


def test_head_names_the_newest_migration() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(Path(schema.__file__).parent / "migrations"))
    assert ScriptDirectory.from_config(config).get_current_head() == store.HEAD


def test_migrations_build_the_declared_schema(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = store.engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
            views = set(sa.inspect(conn).get_view_names())
    finally:
        store.dispose(db_url)
    assert diff == []
    assert views == set(schema.VIEWS)


def test_a_release_01_database_is_upgraded_in_place_and_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "seqcast.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(RELEASE_01.read_text())
    tables = [r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master WHERE type = 'table'")]

    def snapshot() -> dict[str, list[tuple]]:
        with sqlite3.connect(db) as conn:
            return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}

    before = snapshot()
    assert before["observations"] and before["forecasts"] and before["metrics"]
    with sqlite3.connect(db) as conn:
        published = conn.execute(f"SELECT {V01_COLUMNS} FROM latest_forecasts ORDER BY period").fetchall()

    engine = store.engine(store.sqlite_url(db))
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == store.HEAD
            columns = {c["name"] for c in sa.inspect(conn).get_columns("ingest_batches")}
    finally:
        store.dispose()
    assert "rows_sha256" in columns
    after = snapshot()
    for table, rows in before.items():
        # Every row is kept; added columns come last and are empty.
        assert [row[: len(rows[0])] for row in after[table]] == rows if rows else after[table] == []
    with sqlite3.connect(db) as conn:
        assert conn.execute(f"SELECT {V01_COLUMNS} FROM latest_forecasts ORDER BY period").fetchall() == published
    # Opening again changes nothing.
    store.engine(store.sqlite_url(db))
    store.dispose()
    assert snapshot() == after


def test_views_can_be_read_from_a_read_only_copy_of_a_data_folder(tmp_path: Path) -> None:
    db = tmp_path / "live" / "seqcast.db"
    db.parent.mkdir()
    with sqlite3.connect(db) as conn:
        conn.executescript(RELEASE_01.read_text())
    store.engine(store.sqlite_url(db))  # migrated, in WAL mode, like any data folder
    store.dispose()
    with read_only_copy(db.parent, tmp_path / "copy") as copy:
        engine = store.reader(store.sqlite_url(copy / "seqcast.db"))
        try:
            frame = store.latest(engine, "latest_forecasts")
            one = store.latest(engine, "latest_metrics", "air_passengers")
        finally:
            engine.dispose()
        assert sorted(p.name for p in copy.iterdir()) == ["seqcast.db"]  # nothing was created beside it
    assert len(frame) == 12 and frame["period"].is_monotonic_increasing
    assert set(one["series_id"]) == {"air_passengers"} and len(one) == 2


def test_the_schema_documents_are_generated_from_the_definitions() -> None:
    from seqcast.store import docs

    root = Path(__file__).parents[1] / "docs"
    assert (root / "schema.md").read_text() == docs.schema_markdown(), "run: python -m seqcast.store.docs docs/"
    assert (root / "dbt" / "sources.yml").read_text() == docs.dbt_sources()
    described = {item["name"]: item for item in docs.described()}
    assert set(described) == (set(schema.metadata.tables) - {"seqcast_meta"}) | set(schema.VIEWS)
    for item in described.values():
        assert item["description"] and item["key"], item["name"]
        assert all(c["description"] for c in item["columns"]), item["name"]


def test_postgresql_holds_every_description_as_a_comment(postgres_server: str) -> None:
    # (SQLite has no comments: the generated docs are its documentation.)
    with fresh_pg_database(postgres_server) as db_url:
        engine = store.engine(db_url)
        try:
            inspector = sa.inspect(engine)
            for table in schema.metadata.sorted_tables:
                comments = {c["name"]: c.get("comment") for c in inspector.get_columns(table.name)}
                assert comments == {c.name: c.comment for c in table.columns}, table.name
                assert inspector.get_table_comment(table.name)["text"] == table.comment
        finally:
            store.dispose(db_url)


def test_the_newest_migration_creates_the_views_as_the_schema_declares_them() -> None:
    from importlib import import_module

    newest = import_module(f"seqcast.store.migrations.versions.{store.HEAD}_forecast_ledger")

    def words(sql: str) -> list[str]:
        return sql.split()

    assert {k: words(v) for k, v in newest.VIEWS.items()} == {k: words(v) for k, v in schema.VIEWS.items()}
