"""Parquet snapshots: content-addressed, safe paths for any series id."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from seqcast import lake
from seqcast._files import safe_name


def frame(series_id: str, values: list[float]) -> pd.DataFrame:
    periods = pd.date_range("2020-01-01", periods=len(values), freq="MS").astype("datetime64[us]")
    return pd.DataFrame({"series_id": series_id, "period": periods, "value": values, "is_filled": False})


def test_snapshots_are_content_addressed(tmp_path: Path) -> None:
    (first,) = lake.snapshot(frame("a", [1.0, 2.0, 3.0]), tmp_path)
    (same,) = lake.snapshot(frame("a", [1.0, 2.0, 3.0]), tmp_path)
    (revised,) = lake.snapshot(frame("a", [1.0, 2.5, 3.0]), tmp_path)
    assert first.path == same.path and first.data_hash == same.data_hash
    assert revised.data_hash != first.data_hash and Path(revised.path).exists() and Path(first.path).exists()
    back = lake.read_series(first)
    assert back["value"].tolist() == [1.0, 2.0, 3.0] and back["series_id"].tolist() == ["a"] * 3
    assert (first.n_obs, first.first_period, first.last_period, first.missing_months) == (
        3,
        "2020-01-01",
        "2020-03-01",
        0,
    )


def test_missing_months_are_counted(tmp_path: Path) -> None:
    gappy = frame("g", [1.0, 2.0, 3.0, 4.0]).drop(index=[1, 2])
    (ref,) = lake.snapshot(gappy, tmp_path)
    assert ref.missing_months == 2


def test_hostile_series_ids_stay_inside_the_lake(tmp_path: Path) -> None:
    ids = ["../../escape", "a/b", "a_b", "東京", "", "x" * 300]
    for series_id in ids:
        (ref,) = lake.snapshot(frame(series_id, [1.0, 2.0]), tmp_path / "lake")
        path = Path(ref.path).resolve()
        assert (tmp_path / "lake").resolve() in path.parents
        assert lake.read_series(ref)["series_id"].iloc[0] == series_id
    assert safe_name("a/b") != safe_name("a_b")
    assert len(list((tmp_path / "lake").iterdir())) == len(ids)
