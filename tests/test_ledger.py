"""The forecast ledger: realised outcomes when actuals arrive, revisions, the accuracy views, degradation and the
readers, through real runs (the deterministic stand-in model) on a real SQLite file and PostgreSQL."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import seqcast
from seqcast import evaluate, ledger, pipeline
from seqcast.config import RunConfig
from tests.conftest import FAKE, synthetic_panel


def write_months(path: Path, frame: pd.DataFrame) -> Path:
    frame.assign(period=pd.to_datetime(frame["period"]).dt.strftime("%Y-%m")).to_csv(path, index=False)
    return path


def query(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture
def panel() -> pd.DataFrame:
    return synthetic_panel(3, months=60)


def first_run(tmp_path: Path, panel: pd.DataFrame, db_url: str | None = None) -> RunConfig:
    """A run on the panel's first 48 months: its forecasts cover months 49-60."""
    config = RunConfig(data_dir=str(tmp_path / "data"), db_url=db_url, **FAKE)
    head = panel.groupby("series_id").head(48)
    pipeline.run_pipeline(config.model_copy(update={"sources": [str(write_months(tmp_path / "head.csv", head))]}))
    return config


def arrive(tmp_path: Path, config: RunConfig, frame: pd.DataFrame, name: str) -> None:
    pipeline.run_pipeline(config.model_copy(update={"sources": [str(write_months(tmp_path / name, frame))]}))


def test_arriving_actuals_record_each_published_forecasts_outcome(tmp_path: Path, panel: pd.DataFrame) -> None:
    config = first_run(tmp_path, panel)
    db = Path(config.data_dir) / "seqcast.db"
    assert query(db, "SELECT count(*) FROM forecast_outcomes") == [(0,)]
    month49 = panel.groupby("series_id").nth(48)
    arrive(tmp_path, config, month49, "m49.csv")

    rows = query(
        db,
        "SELECT series_id, model_kind, step, yhat, yhat_lower, yhat_upper, actual, error, scale, scaled_error, "
        "covered, covered_outer, is_champion, published_at FROM forecast_outcomes ORDER BY series_id, model_kind",
    )
    first_run_id = query(db, "SELECT run_id FROM pipeline_runs ORDER BY started_at LIMIT 1")[0][0]
    kinds = query(db, "SELECT count(DISTINCT model_kind) FROM forecasts WHERE run_id = ?", (first_run_id,))[0][0]
    assert len(rows) == 3 * kinds  # every model the first run published, for the one month now observed
    for sid, _kind, step, yhat, lo, hi, actual, error, scale, scaled, covered, _outer, _champ, published in rows:
        history = panel[panel["series_id"] == sid]["value"].to_numpy()
        assert step == 1 and actual == pytest.approx(history[48])
        assert error == pytest.approx(actual - yhat)
        assert scale == pytest.approx(evaluate.mase_scale(history[:48]))  # as metrics scale: the data to the origin
        assert scaled == pytest.approx(abs(error) / scale)
        assert bool(covered) == (lo <= actual <= hi)
        assert published is not None
    # Only the first run's forecasts: the second run's are for later months.
    assert {r[0] for r in query(db, "SELECT DISTINCT run_id FROM forecast_outcomes")} == {first_run_id}


def test_a_revised_actual_updates_its_outcome_and_the_old_value_stays_in_revisions(
    tmp_path: Path, panel: pd.DataFrame
) -> None:
    config = first_run(tmp_path, panel)
    db = Path(config.data_dir) / "seqcast.db"
    month49 = panel.groupby("series_id").nth(48)
    arrive(tmp_path, config, month49, "m49.csv")
    before = dict(query(db, "SELECT model_kind, actual FROM forecast_outcomes WHERE series_id = 's000'"))
    revised = month49.assign(value=np.where(month49["series_id"] == "s000", month49["value"] + 50, month49["value"]))
    # The library's ingest records outcomes too, without a run.
    from seqcast import ingest, store

    engine = store.engine(config.database_url())
    ingest.ingest_files(engine, config.paths(), [write_months(tmp_path / "rev.csv", revised)])

    after = query(
        db, "SELECT model_kind, actual, error, yhat, revised_at FROM forecast_outcomes WHERE series_id = 's000'"
    )
    assert len(after) == len(before)
    for kind, actual, error, yhat, revised_at in after:
        assert actual == pytest.approx(before[kind] + 50) and error == pytest.approx(actual - yhat)
        assert revised_at is not None
    old = query(db, "SELECT old_value, new_value FROM observation_revisions WHERE series_id = 's000'")
    assert old == [(pytest.approx(before["fake"]), pytest.approx(before["fake"] + 50))]
    # The other series' outcomes were not touched.
    assert query(db, "SELECT count(*) FROM forecast_outcomes WHERE revised_at IS NOT NULL AND series_id <> 's000'") == [
        (0,)
    ]


def test_accuracy_views_cover_the_last_12_realised_months_and_all_time(db_url: str, tmp_path: Path,
                                                                         panel: pd.DataFrame) -> None:  # fmt: skip
    url = None if db_url.startswith("sqlite") else db_url
    config = RunConfig(data_dir=str(tmp_path / "data"), db_url=url, **FAKE)
    # Run 1 forecasts months 37-48 from 36; they all arrive, and run 2 forecasts 49-60; then 49-53 arrive.
    arrive(tmp_path, config, panel.groupby("series_id").head(36), "head.csv")
    arrive(tmp_path, config, panel.groupby("series_id").nth(list(range(36, 48))), "year.csv")
    from seqcast import ingest, store

    engine = store.engine(config.database_url())
    later = write_months(tmp_path / "later.csv", panel.groupby("series_id").nth(list(range(48, 53))))
    ingest.ingest_files(engine, config.paths(), [later])
    frame = seqcast.read_accuracy(config.database_url(), window="all_time")
    recent = seqcast.read_accuracy(config.database_url())
    published = seqcast.read_accuracy(config.database_url(), published_only=True, window="all_time")

    fake = frame[(frame["unique_id"] == "s000") & (frame["model"] == "fake")].iloc[0]
    assert fake["months"] == 17 and fake["outcomes"] == 17
    fake_recent = recent[(recent["unique_id"] == "s000") & (recent["model"] == "fake")].iloc[0]
    assert fake_recent["months"] == 12 and fake_recent["outcomes"] == 12
    assert str(fake_recent["first_period"])[:7] == str(panel["period"].iloc[41])[:7]
    assert set(recent["window_name"]) == {"last_12_months"} and set(frame["window_name"]) == {"all_time"}
    ledger_rows = pd.read_sql_query(
        "SELECT * FROM forecast_outcomes WHERE series_id = 's000' AND model_kind = 'fake'", engine
    )
    assert len(ledger_rows) == 17
    assert fake["mae"] == pytest.approx(ledger_rows["error"].abs().mean())
    assert fake["mase"] == pytest.approx(ledger_rows["scaled_error"].mean())
    assert fake["bias"] == pytest.approx(-ledger_rows["error"].mean())
    assert fake["coverage"] == pytest.approx(ledger_rows["covered"].astype(bool).mean())
    assert fake["coverage_outer"] == pytest.approx(ledger_rows["covered_outer"].astype(bool).mean())
    assert fake["interval_level"] == pytest.approx(0.8) and fake["interval_level_outer"] == pytest.approx(0.95)
    assert set(published["unique_id"]) == {"s000", "s001", "s002"} and "model" not in published


def test_judge_marks_a_series_whose_realised_mase_is_far_above_its_holdout_or_whose_intervals_miss() -> None:
    def rows(sid: str, scaled: list[float], covered: list[bool], holdout: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "series_id": sid,
                "period": pd.date_range("2020-01-01", periods=len(scaled), freq="MS"),
                "scaled_error": scaled,
                "covered": covered,
                "interval_level": 0.8,
                "holdout_mase": holdout,
            }
        )

    outcomes = pd.concat(
        [
            rows("fine", [0.9, 1.1, 1.0, 0.8], [True, True, False, True], 1.0),
            rows("worse", [2.5, 3.0, 2.8, 2.6], [True, True, True, True], 1.0),
            rows("missed", [1.0, 1.0, 1.0, 1.0], [False, False, False, False], 1.0),
            rows("too_few", [9.0, 9.0], [False, False], 1.0),
            # Old months beyond the window do not count: the latest 2 months are fine.
            rows("recovered", [9.0, 9.0, 9.0, 1.0, 1.0], [True] * 5, 1.0),
        ]
    )
    judged = ledger.judge(outcomes, factor=2.0, months=6)
    assert set(judged) == {"worse", "missed", "recovered"}
    assert "realised MASE 2.73 over 4 forecasts against holdout 1.00" in judged["worse"].reason
    assert "0 of 4 actuals inside the 80% interval" in judged["missed"].reason
    # Half the actuals outside the 95% interval is evidence; half outside the 80% one, over six months, is not yet.
    wide = rows("wide_misses", [1.0] * 6, [True, True, True, False, False, False], 1.0).assign(
        covered_outer=[True, True, True, False, False, False], interval_level_outer=0.95
    )
    judged_wide = ledger.judge(wide, factor=2.0, months=6)
    assert judged_wide["wide_misses"].reason == "degraded: 3 of 6 actuals inside the 95% interval"
    # Over the latest two months, with two outcomes enough: "recovered" has, two misses are not yet evidence.
    assert set(ledger.judge(outcomes, factor=2.0, months=2, min_outcomes=2)) == {"worse", "too_few"}


def test_a_degraded_series_is_marked_and_retrained_even_without_new_data(tmp_path: Path,
                                                                         panel: pd.DataFrame) -> None:  # fmt: skip
    config = first_run(tmp_path, panel)
    db = Path(config.data_dir) / "seqcast.db"
    # s001 breaks: its next three months jump far from anything its history promised.
    jump = panel[panel["series_id"] == "s001"].iloc[48:51].assign(value=lambda f: f["value"] * 3)
    calm = panel[panel["series_id"] != "s001"].groupby("series_id").nth([48, 49, 50])
    from seqcast import ingest, store

    ingest.ingest_files(store.engine(config.database_url()), config.paths(),
                        [write_months(tmp_path / "new.csv", pd.concat([jump, calm]))])  # fmt: skip
    outcome = pipeline.run_pipeline(config)

    assert set(outcome.degraded) == {"s001"} and "realised MASE" in outcome.degraded["s001"]
    run_id = outcome.run_id
    assert query(
        db, "SELECT series_id, status, degraded FROM series_status WHERE run_id = ? ORDER BY 1", (run_id,)
    ) == [
        ("s000", "trained", 0),
        ("s001", "trained", 1),
        ("s002", "trained", 0),
    ]
    reason = query(db, "SELECT reason FROM series_status WHERE run_id = ? AND series_id = 's001'", (run_id,))[0][0]
    assert reason.startswith("degraded: realised MASE") and "retrained" in reason

    # No new data: the others are reused; s001 is judged on the same evidence, so not retrained twice.
    again = pipeline.run_pipeline(config)
    assert set(again.reused) == {"s000", "s001", "s002"} and set(again.degraded) == {"s001"}
    # A judgement that does not change still retrains a series whose models the cache lost track of: the retrain mark
    # is part of its models' keys, so the retrained models are not the ones from before the jump.
    marked = query(db, "SELECT count(*) FROM model_runs WHERE series_id = 's001' AND data_hash LIKE '%degraded%'")
    assert marked[0][0] > 0


def test_a_rerun_with_no_new_data_copies_no_forecast_rows(tmp_path: Path, panel: pd.DataFrame) -> None:
    config = first_run(tmp_path, panel)
    db = Path(config.data_dir) / "seqcast.db"
    counts = query(db, "SELECT (SELECT count(*) FROM forecasts), (SELECT count(*) FROM metrics)")
    published = query(db, "SELECT * FROM latest_forecasts ORDER BY series_id, period")
    outcome = pipeline.run_pipeline(config)
    assert query(db, "SELECT (SELECT count(*) FROM forecasts), (SELECT count(*) FROM metrics)") == counts
    assert query(db, "SELECT * FROM latest_forecasts ORDER BY series_id, period") == published
    first = published[0][0]
    assert set(outcome.unchanged.values()) == {first}
    assert query(db, "SELECT DISTINCT forecast_run_id FROM series_status WHERE run_id = ?", (outcome.run_id,)) == [
        (first,)
    ]
    # The rerun's outcome (and its page, `seqcast report`) still shows the forecasts that stand.
    assert outcome.champions and len(outcome.forecasts) == 3 * 12


def test_readers_return_the_ecosystems_columns(tmp_path: Path, panel: pd.DataFrame) -> None:
    config = first_run(tmp_path, panel)
    published = seqcast.read_forecasts(config.data_dir)
    assert list(published.columns[:7]) == [
        "unique_id",
        "ds",
        "seqcast",
        "seqcast-lo-80",
        "seqcast-hi-80",
        "seqcast-lo-95",
        "seqcast-hi-95",
    ]
    assert {"model", "step", "origin", "run_id", "published_at"} <= set(published.columns)
    assert len(published) == 36 and published["ds"].dtype.kind == "M"
    assert (published["seqcast-lo-95"] <= published["seqcast-lo-80"]).all()
    every = seqcast.read_forecasts(Path(config.data_dir) / "seqcast.db", models="all", series_id="s000")
    assert len(every) == 12 and {"fake", "fake-lo-80", "fake-hi-95", "seasonal_naive"} <= set(every.columns)
    champion = published[published["unique_id"] == "s000"].iloc[0]
    row = every.iloc[0]
    assert row[champion["model"]] == pytest.approx(champion["seqcast"])
    metrics = seqcast.read_metrics(config.data_dir, series_id="s001")
    assert set(metrics["unique_id"]) == {"s001"} and metrics["is_champion"].sum() == 1
    assert {"model", "mase", "published_at"} <= set(metrics.columns)
    assert seqcast.read_accuracy(config.data_dir).empty  # no actuals yet
    with pytest.raises(ValueError, match="window must be"):
        seqcast.read_accuracy(config.data_dir, window="ever")  # type: ignore[arg-type]
    assert not any(math.isnan(v) for v in published["seqcast"])


def test_a_series_judged_degraded_is_retrained_without_new_data(db_url: str, tmp_path: Path,
                                                                 panel: pd.DataFrame) -> None:  # fmt: skip
    config = first_run(tmp_path, panel, None if db_url.startswith("sqlite") else db_url)
    jump = panel[panel["series_id"] == "s001"].iloc[48:51].assign(value=lambda f: f["value"] * 3)
    calm = panel[panel["series_id"] != "s001"].groupby("series_id").nth([48, 49, 50])
    lenient = config.model_copy(update={"degradation_factor": 1000.0, "degradation_months": 1})
    # Judged on one month at a time and a lenient factor, nothing is degraded yet: the data's arrival retrains all.
    arrive(tmp_path, lenient, pd.concat([jump, calm]), "new.csv")
    settled = pipeline.run_pipeline(lenient)
    assert not settled.degraded and not settled.trained
    # The same data, judged by the default rule: s001 is degraded and retrained; the others stay reused.
    judged = pipeline.run_pipeline(config)
    assert set(judged.degraded) == {"s001"}
    assert judged.trained == ("s001",) and set(judged.reused) == {"s000", "s002"}


def test_readers_default_to_the_configured_data_folder(
    tmp_path: Path, panel: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = first_run(tmp_path, panel)
    monkeypatch.setenv("SEQCAST_DATA_DIR", config.data_dir)
    monkeypatch.delenv("SEQCAST_DB_URL", raising=False)
    assert seqcast.read_forecasts().equals(seqcast.read_forecasts(config.data_dir))
    assert len(seqcast.read_metrics()) == len(seqcast.read_metrics(config.database_url()))


def test_a_retried_publish_keeps_the_runs_rows(tmp_path: Path, panel: pd.DataFrame,
                                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import dataclasses

    from seqcast import stages

    def twice(*args):  # type: ignore[no-untyped-def]
        stages.publish_stage(*args)  # the first attempt wrote everything, then the task was retried
        return stages.publish_stage(*args)

    monkeypatch.setattr(stages, "PUBLISH", dataclasses.replace(stages.PUBLISH, fn=twice))
    config = first_run(tmp_path, panel)
    db = Path(config.data_dir) / "seqcast.db"
    assert query(db, "SELECT count(DISTINCT series_id), count(*) FROM latest_forecasts") == [(3, 36)]
    assert query(db, "SELECT count(*) FROM series_status WHERE forecast_run_id <> run_id") == [(0,)]
