"""The pipeline's stages as a plain library (no Prefect): per-series problems, revisions, locks, atomicity."""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from seqcast import pipeline, stages
from seqcast.config import RunConfig
from seqcast.lock import RunInProgress
from seqcast.records import Failure, Skip
from tests.conftest import FAKE, FAST, synthetic_panel


def query(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def write_panel(path: Path, frame: pd.DataFrame) -> Path:
    frame.assign(period=pd.to_datetime(frame["period"]).dt.strftime("%Y-%m")).to_csv(path, index=False)
    return path


@pytest.fixture
def panel_config(tmp_path: Path) -> RunConfig:
    # Orchestration, not numerics: the deterministic stand-in model.
    return RunConfig(data_dir=str(tmp_path / "data"), **FAKE)


def test_short_and_gappy_series_are_skipped_with_reasons_and_the_run_completes(
    tmp_path: Path, panel_config: RunConfig
) -> None:
    panel = synthetic_panel(3)
    short = panel[panel["series_id"] == "s001"].head(20)
    gappy = panel[panel["series_id"] == "s002"].drop(index=panel[panel["series_id"] == "s002"].index[30])
    frame = pd.concat([panel[panel["series_id"] == "s000"], short, gappy])
    config = panel_config.model_copy(update={"sources": [str(write_panel(tmp_path / "p.csv", frame))]})

    outcome = pipeline.run_pipeline(config)

    assert list(outcome.trained) == ["s000", "s001"]  # the short one by what its length allows
    reasons = {s.series_id: s.reason for s in outcome.skipped}
    assert list(reasons) == ["s002"] and "1 missing month(s)" in reasons["s002"]
    db = Path(config.data_dir) / "seqcast.db"
    assert query(db, "SELECT series_id, status FROM series_status ORDER BY series_id") == [
        ("s000", "trained"),
        ("s001", "trained"),
        ("s002", "skipped"),
    ]
    assert query(db, "SELECT DISTINCT series_id FROM latest_forecasts ORDER BY 1") == [("s000",), ("s001",)]
    assert query(db, "SELECT status, series_skipped FROM pipeline_runs") == [("completed", 1)]


def test_fill_gaps_interpolates_interior_months_and_marks_them(tmp_path: Path, panel_config: RunConfig) -> None:
    panel = synthetic_panel(1)
    gappy = panel.drop(index=[30, 31])
    config = panel_config.model_copy(
        update={"sources": [str(write_panel(tmp_path / "p.csv", gappy))], "fill_gaps": True}
    )
    outcome = pipeline.run_pipeline(config)
    assert list(outcome.trained) == ["s000"] and outcome.skipped == ()
    snap = next((Path(config.data_dir) / "lake").glob("series=s000-*/*.parquet"))
    lake = pq.read_table(snap).to_pandas()
    assert len(lake) == 60 and lake["is_filled"].sum() == 2
    filled = lake[lake["is_filled"]]["value"].to_numpy()
    before, after = lake["value"].iloc[29], lake["value"].iloc[32]
    assert before < filled[0] < filled[1] < after or before > filled[0] > filled[1] > after
    db = Path(config.data_dir) / "seqcast.db"
    assert query(db, "SELECT COUNT(*) FROM observations") == [(58,)]  # received values only
    assert "2 missing month(s) interpolated" in query(db, "SELECT reason FROM series_status")[0][0]


def test_revision_retrains_only_the_revised_series(tmp_path: Path, panel_config: RunConfig) -> None:
    panel = synthetic_panel(3)
    first = panel_config.model_copy(update={"sources": [str(write_panel(tmp_path / "p.csv", panel))]})
    assert list(pipeline.run_pipeline(first).trained) == ["s000", "s001", "s002"]

    revised = panel[panel["series_id"] == "s001"].tail(1).assign(value=999.0)
    second = panel_config.model_copy(update={"sources": [str(write_panel(tmp_path / "r.csv", revised))]})
    outcome = pipeline.run_pipeline(second)

    assert list(outcome.trained) == ["s001"]
    assert list(outcome.reused) == ["s000", "s002"]
    assert outcome.revised_observations == 1
    db = Path(panel_config.data_dir) / "seqcast.db"
    ((old, new),) = query(db, "SELECT old_value, new_value FROM observation_revisions")
    assert new == 999.0 and old != 999.0


#: Hold a data folder's run lock until stdin closes (another process's run).
HOLD_THE_LOCK = """
import sys
from seqcast.config import RunConfig
from seqcast.lock import run_lock
with run_lock(RunConfig.model_validate_json(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_second_run_on_the_same_folder_is_refused_while_another_process_holds_the_lock(
    panel_config: RunConfig,
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, panel_config.model_dump_json()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdin is not None
    try:
        assert holder.stdout.readline().strip() == "held"  # waits for the other process to hold it
        with pytest.raises(RunInProgress, match=rf"already in progress on .* \(pid {holder.pid}\); this one did not"):
            pipeline.run_pipeline(panel_config)
    finally:
        holder.stdin.close()  # the holder releases the lock and exits
        holder.wait(timeout=120)
    # released: the next run goes ahead
    assert list(pipeline.run_pipeline(panel_config).trained) == ["air_passengers"]


def test_a_failed_publish_leaves_no_partial_run(panel_config: RunConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline.run_pipeline(panel_config)
    db = Path(panel_config.data_dir) / "seqcast.db"
    published = query(db, "SELECT run_id, period, yhat FROM latest_forecasts ORDER BY period")

    from seqcast.store import writes

    real_insert = writes.insert

    def insert_then_fail(conn, table, records, chunk=20_000):
        real_insert(conn, table, records, chunk)
        if table.name == "forecasts":
            raise OSError("disk full")

    monkeypatch.setattr(writes, "insert", insert_then_fail)
    (Path(panel_config.data_dir) / "inbox" / "air_passengers.csv").write_text("Month,#Passengers\n1961-01,450\n")
    with pytest.raises(OSError, match="disk full"):
        pipeline.run_pipeline(panel_config)

    assert query(db, "SELECT run_id, period, yhat FROM latest_forecasts ORDER BY period") == published
    runs = query(db, "SELECT status, message FROM pipeline_runs ORDER BY started_at")
    assert [r[0] for r in runs] == ["completed", "failed"] and "disk full" in runs[1][1]
    failed_run = query(db, "SELECT run_id FROM pipeline_runs WHERE status = 'failed'")[0][0]
    assert query(db, "SELECT COUNT(*) FROM forecasts WHERE run_id = ?", (failed_run,)) == [(0,)]
    assert query(db, "SELECT COUNT(*) FROM metrics WHERE run_id = ?", (failed_run,)) == [(0,)]


def test_the_pipeline_publishes_the_same_on_sqlite_and_postgresql(tmp_path: Path, db_url: str) -> None:
    import sqlalchemy as sa

    config = RunConfig(
        data_dir=str(tmp_path / "data"), db_url=db_url, models=["rnn"], preset="local", statistical=[], **FAST
    )
    first = pipeline.run_pipeline(config)
    second = pipeline.run_pipeline(config)
    assert list(first.trained) == ["air_passengers"] and list(second.reused) == ["air_passengers"]
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        periods = conn.execute(sa.text("SELECT period FROM latest_forecasts ORDER BY period")).scalars().all()
        runs = conn.execute(
            sa.text("SELECT status, series_trained, series_reused FROM pipeline_runs ORDER BY started_at")
        ).all()
        kinds = conn.execute(sa.text("SELECT model_kind FROM latest_metrics ORDER BY model_kind")).scalars().all()
    engine.dispose()
    assert [str(p)[:10] for p in periods] == [f"1961-{m:02d}-01" for m in range(1, 13)]
    assert [tuple(r) for r in runs] == [("completed", 1, 0), ("completed", 0, 1)]
    assert kinds == ["naive", "rnn", "seasonal_naive"]


@pytest.mark.parametrize(
    ("n", "sizes"),
    [
        (0, []),
        (7, [7]),
        (101, [25, 25, 25, 25, 1]),
        (230, [25] * 9 + [5]),
        (1000, [50] * 16 + [25] * 8),
        (1030, [50] * 16 + [25] * 9 + [5]),
    ],
)
def test_chunks_cover_every_item_in_order_and_the_last_ones_are_half_size(n: int, sizes: list[int]) -> None:
    items = list(range(n))
    chunks = pipeline.chunked(items, 50, workers=2)  # the last 2 x 2 chunks' worth (200 items) in halves
    assert [len(c) for c in chunks] == sizes
    assert [i for c in chunks for i in c] == items
    assert pipeline.chunked(items, 50, workers=1) == [items[i : i + 50] for i in range(0, n, 50)]


def test_charts_show_the_first_published_series_and_none_that_failed(
    tmp_path: Path, panel_config: RunConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from seqcast._files import safe_name

    def first_fails(refs: list, validations: list, fits: list, config: RunConfig, calibration: object) -> list:
        rows = stages.forecast_chunk(refs, validations, fits, config, calibration)  # type: ignore[arg-type]
        return [Failure(r.series_id, "forecast", "RuntimeError: boom") if r.series_id == "s000" else r for r in rows]

    monkeypatch.setattr(stages, "FORECAST", dataclasses.replace(stages.FORECAST, fn=first_fails))
    source = write_panel(tmp_path / "p.csv", synthetic_panel(3))
    config = panel_config.model_copy(update={"sources": [str(source)], "max_plots": 1, "workers": 1})

    outcome = pipeline.run_pipeline(config)

    assert list(outcome.trained) == ["s001", "s002"]
    assert outcome.skipped == (Skip("s000", "training failed: forecast: RuntimeError: boom"),)
    # Drawn while publish wrote: the first published series only (max_plots 1), its forecast and its loss.
    assert [Path(p).name for p in outcome.plots] == [
        f"{safe_name('s001')}-forecast.png",
        f"{safe_name('s001')}-loss.png",
    ]
    assert all(Path(p).stat().st_size > 0 for p in outcome.plots)
    assert str(Path(outcome.plots[0]).parent).endswith(outcome.run_id)
