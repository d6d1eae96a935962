"""Concurrent writers on one database (SQLite and PostgreSQL): nothing lost, nothing collides."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from seqcast import ingest, store
from seqcast.config import DataPaths

WRITERS = 6
SHARED, MONTHS = 12, 24


def _file(folder: Path, k: int) -> Path:
    """Writer k's file: the same shared series and months with writer-specific values, plus a series of its own."""
    periods = pd.date_range("2020-01-01", periods=MONTHS, freq="MS").strftime("%Y-%m")
    rows = [(f"shared-{s:02d}", p, 100.0 * s + i + 0.5 * k) for s in range(SHARED) for i, p in enumerate(periods)]
    rows += [(f"own-{k}", p, float(i)) for i, p in enumerate(periods)]
    path = folder / f"writer-{k}.csv"
    pd.DataFrame(rows, columns=["series_id", "period", "value"]).to_csv(path, index=False)
    return path


def test_concurrent_ingests_lose_nothing_and_chain_revisions(db_url: str, tmp_path: Path) -> None:
    files = [_file(tmp_path, k) for k in range(WRITERS)]
    start = threading.Barrier(WRITERS)

    def write(k: int) -> list[ingest.BatchReport]:
        start.wait(timeout=120)  # every writer begins at once, creating the schema included
        engine = store.open_engine(db_url)
        try:
            return ingest.ingest_files(engine, DataPaths(tmp_path / f"folder-{k}").create(), [files[k]])
        finally:
            engine.dispose()

    with ThreadPoolExecutor(WRITERS) as pool:
        reports = [r for batch in pool.map(write, range(WRITERS)) for r in batch]
    assert [r.status for r in reports] == ["applied"] * WRITERS, [r.error for r in reports]
    # One writer inserted each shared month; every other one revised it: no row lost, none doubled.
    assert sum(r.rows_inserted for r in reports) == SHARED * MONTHS + WRITERS * MONTHS
    assert sum(r.rows_updated for r in reports) == (WRITERS - 1) * SHARED * MONTHS

    engine = store.open_engine(db_url)
    try:
        observations = store.load_observations(engine)
        revisions = store.read_table(
            engine, "SELECT series_id, period, old_value, new_value FROM observation_revisions ORDER BY revision_id"
        )
        _, version = store.store_identity(engine)
    finally:
        engine.dispose()
    assert len(observations) == SHARED * MONTHS + WRITERS * MONTHS
    assert version == WRITERS  # every batch changed data, and each bump counted
    # Revisions of each month form one chain ending at the stored value: each writer saw the one before.
    current = observations.set_index(["series_id", observations["period"].dt.date.astype(str)])["value"]
    for (sid, period), chain in revisions.groupby(["series_id", "period"]):
        old, new = chain["old_value"].tolist(), chain["new_value"].tolist()
        assert len(chain) == WRITERS - 1
        assert old[1:] == new[:-1], f"{sid} {period}: revisions {old} -> {new} are not one chain"
        assert new[-1] == current[(sid, str(period)[:10])]


def test_concurrent_publishes_of_the_same_models_do_not_collide(db_url: str) -> None:
    shared = [
        {
            "model_id": f"gru-final-{i:04d}",
            "series_id": f"s{i}",
            "model_kind": "gru",
            "purpose": "final",
            "config_hash": "c",
            "data_hash": "d",
            "trained_at": store.utcnow(),
            "train_seconds": 0.1,
            "epochs": 3,
            "artifact_path": f"models/{i}.pt",
        }
        for i in range(200)
    ]
    history = [
        {"model_id": m["model_id"], "epoch": e, "train_loss": 1.0 / e, "val_loss": None}
        for m in shared
        for e in (1, 2, 3)
    ]
    start = threading.Barrier(WRITERS)

    def publish(k: int) -> None:
        engine = store.open_engine(db_url)
        try:
            run_id = f"run-{k}"
            store.start_run(engine, run_id, None, "{}", f"/data/{k}")
            rows = store.RunRows(run_id, 0, 200, 0, 0, [{**m, "run_id": run_id} for m in shared], history, [], [], [])
            start.wait(timeout=120)
            store.write_run(engine, rows)
        finally:
            engine.dispose()

    with ThreadPoolExecutor(WRITERS) as pool:
        list(pool.map(publish, range(WRITERS)))  # re-raises any writer's error
    engine = store.open_engine(db_url)
    try:
        runs = store.read_table(engine, "SELECT status FROM pipeline_runs")
        models = store.read_table(engine, "SELECT COUNT(*) AS n, COUNT(DISTINCT model_id) AS d FROM model_runs")
        epochs = store.read_table(engine, "SELECT COUNT(*) AS n FROM training_history")
    finally:
        engine.dispose()
    assert runs["status"].tolist() == ["completed"] * WRITERS
    assert models.iloc[0].tolist() == [200, 200]
    assert int(epochs.iloc[0]["n"]) == 600
