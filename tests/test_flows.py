"""The real `monthly-forecast` flow on a real Prefect test server, a real SQLite file and real training."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from flows.monthly_forecast import monthly_forecast
from seqcast.config import RunConfig
from tests.conftest import FAKE, FAST

pytestmark = pytest.mark.usefixtures("prefect_harness")


def query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def latest(db: Path) -> list[tuple]:
    return query(db, "SELECT period, yhat, yhat_lower, yhat_upper FROM latest_forecasts ORDER BY period")


def test_monthly_flow_first_run_rerun_and_new_month(data_dir: Path) -> None:
    config = RunConfig(data_dir=str(data_dir), **FAKE)
    db = data_dir / "seqcast.db"

    # 1. First run on a fresh folder: the bundled series is ingested, trained, validated and published.
    first = monthly_forecast(config)
    assert query(db, "SELECT COUNT(*) FROM observations WHERE series_id = 'air_passengers'") == [(144,)]
    rows = latest(db)
    assert [r[0] for r in rows] == [f"1961-{m:02d}-01" for m in range(1, 13)]
    assert all(lo <= y <= hi for _, y, lo, hi in rows)
    kinds = {r[0] for r in query(db, "SELECT model_kind FROM metrics")}
    assert kinds == {"fake", "seasonal_naive", "naive"}
    assert query(db, "SELECT COUNT(*) FROM metrics WHERE is_champion") == [(1,)]
    assert list(first["outcome"].trained) == ["air_passengers"]
    assert first["task_states"]["train-air_passengers"] == "Completed"
    assert len(first["outcome"].plots) == 2 and all(Path(p).stat().st_size > 0 for p in first["outcome"].plots)
    assert query(db, "SELECT status, new_observations, series_trained FROM pipeline_runs") == [("completed", 144, 1)]

    # 2. No new data: nothing is trained, the training task is Cached, forecasts are identical.
    models_before = query(db, "SELECT model_id, trained_at FROM model_runs ORDER BY model_id")
    second = monthly_forecast(config)
    assert query(db, "SELECT model_id, trained_at FROM model_runs ORDER BY model_id") == models_before
    assert second["task_states"]["train-air_passengers"] == "Cached"
    assert second["task_states"]["validate-air_passengers"] == "Cached"
    last_run = query(
        db,
        "SELECT series_trained, series_reused, new_observations FROM pipeline_runs ORDER BY started_at DESC LIMIT 1",
    )
    assert last_run == [(0, 1, 0)]
    assert latest(db) == rows
    assert list(second["outcome"].reused) == ["air_passengers"] and list(second["outcome"].trained) == []

    # 3. A new month arrives in the inbox: ingested, retrained, forecasts move on by a month.
    (data_dir / "inbox" / "air_passengers.csv").write_text("Month,#Passengers\n1961-01,450\n")
    third = monthly_forecast(config)
    assert third["outcome"].new_observations == 1
    assert list(third["outcome"].trained) == ["air_passengers"]
    assert third["task_states"]["train-air_passengers"] == "Completed"
    periods = [r[0] for r in latest(db)]
    assert periods[0] == "1961-02-01" and periods[-1] == "1962-01-01" and len(periods) == 12
    assert list((data_dir / "inbox").iterdir()) == []
    assert len(list((data_dir / "archive").iterdir())) == 2  # the bundled file and the new month


def test_same_data_and_config_in_two_folders_give_identical_forecasts(tmp_path: Path) -> None:
    results = []
    for name in ("a", "b"):
        config = RunConfig(data_dir=str(tmp_path / name), models=["gru"], preset="local", statistical=[], **FAST)
        monthly_forecast(config)
        results.append(
            query(
                tmp_path / name / "seqcast.db",
                "SELECT model_kind, period, yhat FROM forecasts ORDER BY model_kind, period",
            )
        )
    assert results[0] == results[1] and len(results[0]) == 3 * 12  # gru and the two baselines


def test_sql_consumers_read_the_views_with_sqlite3_alone(data_dir: Path) -> None:
    monthly_forecast(RunConfig(data_dir=str(data_dir), models=["rnn", "gru"], preset="local", statistical=[], **FAST))
    with sqlite3.connect(data_dir / "seqcast.db") as conn:
        conn.row_factory = sqlite3.Row
        forecasts = conn.execute("SELECT * FROM latest_forecasts WHERE series_id = ?", ("air_passengers",)).fetchall()
        metrics = conn.execute("SELECT * FROM latest_metrics ORDER BY model_kind").fetchall()
    assert len(forecasts) == 12
    assert {
        "run_id",
        "series_id",
        "model_kind",
        "origin",
        "period",
        "step",
        "yhat",
        "yhat_lower",
        "yhat_upper",
    } <= set(forecasts[0].keys())
    assert forecasts[0]["origin"] == "1960-12-01" and forecasts[0]["step"] == 1
    assert [m["model_kind"] for m in metrics] == ["combination", "gru", "naive", "rnn", "seasonal_naive"]
    champions = [m for m in metrics if m["is_champion"]]
    assert len(champions) == 1 and champions[0]["model_kind"] == forecasts[0]["model_kind"]
    best = min(metrics, key=lambda m: m["mase"])
    combination = next(m for m in metrics if m["model_kind"] == "combination")
    clearly = best["mase"] < 0.3 * combination["mase"]
    assert champions[0]["model_kind"] == (best["model_kind"] if clearly else "combination")
    assert all(m["holdout_start"] == "1960-01-01" and m["holdout_end"] == "1960-12-01" for m in metrics)


def test_a_series_that_cannot_be_modelled_shows_failed_while_the_run_completes(data_dir: Path, tmp_path: Path) -> None:
    from tests.conftest import synthetic_panel

    panel = synthetic_panel(3)
    short = (panel["series_id"] == "s001") & (panel.index % 60 >= 20)  # s001 keeps only 20 months
    gap = (panel["series_id"] == "s002") & (panel.index % 60 == 30)  # s002 misses a month
    panel = panel[~short & ~gap]
    source = tmp_path / "panel.csv"
    panel.assign(period=panel["period"].dt.strftime("%Y-%m")).to_csv(source, index=False)

    outcome = monthly_forecast(RunConfig(data_dir=str(data_dir), sources=[str(source)], **FAKE))["outcome"]

    # A short series is still forecast, by what its length allows; a gappy one cannot be, and shows Failed.
    assert list(outcome.trained) == ["s000", "s001"]
    # The 8 months before its 12-month holdout validate naive alone, but its 20 allow seasonal naive (fake needs 24).
    assert outcome.champions["s001"] == "seasonal_naive"
    assert outcome.skipped[0].series_id == "s002" and "1 missing month(s)" in outcome.skipped[0].reason
    db = data_dir / "seqcast.db"
    assert query(db, "SELECT status FROM pipeline_runs") == [("completed",)]
    assert query(db, "SELECT series_id, status FROM series_status ORDER BY series_id") == [
        ("s000", "trained"),
        ("s001", "trained"),
        ("s002", "skipped"),
    ]
    assert query(db, "SELECT COUNT(DISTINCT series_id) FROM latest_forecasts") == [(2,)]
    summary = (Path(outcome.report)).read_text()
    assert "s002" in summary and "missing month" in summary


class _Payload:
    """Unpickling this creates `marker`: code run by whoever loads it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def test_a_planted_pickle_in_the_task_results_never_runs(data_dir: Path, tmp_path: Path) -> None:
    import json

    from prefect.serializers import PickleSerializer

    config = RunConfig(data_dir=str(data_dir), **FAKE)
    first = monthly_forecast(config)
    marker = tmp_path / "code-ran"
    payload = PickleSerializer().dumps(_Payload(marker)).decode()
    planted = list((data_dir / "task-results").iterdir())
    assert planted
    for stored in planted:  # every cached result replaced by a pickle record, as Prefect itself would write one
        record = json.loads(stored.read_text())
        record["metadata"]["serializer"] = {"type": "pickle", "picklelib": "cloudpickle"}
        record["result"] = payload
        stored.write_text(json.dumps(record))
    poisoned = planted[0].read_bytes()

    second = monthly_forecast(config)

    assert not marker.exists()
    assert second["task_states"]["train-air_passengers"] == "Completed"  # recomputed, not loaded
    assert latest(data_dir / "seqcast.db") == latest_of_run(data_dir / "seqcast.db", first["outcome"].run_id)
    # The payload is live: Prefect's own reader runs it.
    from prefect._internal.result_records import ResultRecord

    ResultRecord.deserialize(poisoned)
    assert marker.exists()


def latest_of_run(db: Path, run_id: str) -> list[tuple]:
    return query(
        db,
        "SELECT period, yhat, yhat_lower, yhat_upper FROM forecasts WHERE is_champion AND run_id = "
        f"'{run_id}' ORDER BY period",
    )


def test_a_rerun_after_the_lake_and_models_were_deleted_makes_them_anew(data_dir: Path) -> None:
    import shutil

    config = RunConfig(data_dir=str(data_dir), **FAKE)
    monthly_forecast(config)
    published = latest(data_dir / "seqcast.db")
    assert monthly_forecast(config)["task_states"]["train-air_passengers"] == "Cached"
    for folder in ("lake", "models"):
        shutil.rmtree(data_dir / folder)
    again = monthly_forecast(config)
    assert again["task_states"]["snapshot"] == "Completed"
    assert again["task_states"]["train-air_passengers"] == "Completed"
    assert any((data_dir / "lake").rglob("*.parquet")) and any((data_dir / "models").glob("*.pt"))
    assert latest(data_dir / "seqcast.db") == published
    # An altered model file is not reused from the cache either.
    model = next((data_dir / "models").glob("fake-final-*.pt"))
    model.write_bytes(model.read_bytes()[:-8] + b"\x00" * 8)
    third = monthly_forecast(config)
    assert third["task_states"]["train-air_passengers"] == "Completed"
    assert latest(data_dir / "seqcast.db") == published


def test_prune_removes_the_cached_results_no_kept_run_used_and_keeps_what_a_rerun_reused(data_dir: Path) -> None:
    import os
    import time

    from seqcast import prune, store

    config = RunConfig(data_dir=str(data_dir), **FAKE)
    results = data_dir / "task-results"
    monthly_forecast(config)
    stored = sorted(results.iterdir())
    month_ago = time.time() - 30 * 86400
    for path in stored:  # as if the first run were a month old
        os.utime(path, (month_ago, month_ago))
    stranger = results / "notes.txt"  # not a stored result: never pruned
    stranger.write_text("kept")
    os.utime(stranger, (month_ago, month_ago))

    # A rerun with nothing new reuses the cached results, and reading them marks them as used.
    rerun = monthly_forecast(config)
    assert rerun["task_states"]["train-air_passengers"] == "Cached"
    touched = {p.name for p in stored if p.stat().st_mtime > month_ago + 86400}
    assert touched and touched < {p.name for p in stored}  # the cached stages' results, not the whole run's

    # A new month: the stages run again and store new results; keeping one run prunes the older results.
    (data_dir / "inbox" / "air_passengers.csv").write_text("Month,#Passengers\n1961-01,450\n")
    newest = monthly_forecast(config)
    assert newest["task_states"]["train-air_passengers"] == "Completed"
    before = {p.name for p in results.iterdir()}
    done = prune.prune(store.engine(config.database_url()), config.paths(), keep=1)
    after = {p.name for p in results.iterdir()}
    assert done.kept_runs == (newest["outcome"].run_id,)
    assert done.task_results == len(before - after) > 0
    assert {p.name for p in stored} & after == set() and stranger.name in after
    # What the kept run stored is still reused: nothing changed, nothing runs again.
    again = monthly_forecast(config)
    assert again["task_states"]["train-air_passengers"] == "Cached"
    assert again["task_states"]["validate-air_passengers"] == "Cached"
