"""Parquet copies of the observations, one content-addressed file per series: what training reads."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from seqcast._files import atomic_write, safe_name
from seqcast.records import SeriesRef

_SCHEMA = pa.schema(
    [
        ("series_id", pa.string()),
        ("period", pa.date32()),
        ("value", pa.float64()),
        ("is_filled", pa.bool_()),
    ]
)


def data_hash(periods: pd.Series, values: pd.Series) -> str:
    """Hash of a series' sorted (period, value) rows."""
    order = np.argsort(periods.to_numpy())
    months = periods.to_numpy()[order].astype("datetime64[M]").astype(np.int64)
    return _digest(months, values.to_numpy(dtype=np.float64)[order])


def _digest(months: np.ndarray, values: np.ndarray) -> str:
    """`data_hash` of rows already sorted by period: months since 1970 (int64) and values (float64)."""
    return hashlib.sha256(months.tobytes() + values.tobytes()).hexdigest()[:32]


def _write_parquet(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path)


def series_folder(lake: Path, series_id: str) -> Path:
    return lake / f"series={safe_name(series_id)}"


def snapshot(observations: pd.DataFrame, lake: Path) -> list[SeriesRef]:
    """Write each series' rows to `lake/series=<safe id>/<data hash>.parquet` unless already there.

    The rows are sorted and converted to Arrow once; each series is a slice of that table (thousands of
    series cost one sort, not thousands of small frames).
    """
    if observations.empty:
        return []
    frame = observations.sort_values(["series_id", "period"], kind="stable")
    ids = frame["series_id"].astype(str).to_numpy(dtype=object)
    periods = frame["period"].to_numpy(dtype="datetime64[us]")
    values = frame["value"].to_numpy(dtype=np.float64)
    months = periods.astype("datetime64[M]").astype(np.int64)
    table = pa.table(
        [
            pa.array(ids, pa.string()),
            pa.array(periods.astype("datetime64[D]"), pa.date32()),
            pa.array(values, pa.float64()),
            pa.array(frame["is_filled"].to_numpy(dtype=bool, na_value=False), pa.bool_()),
        ],
        schema=_SCHEMA,
    )
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], len(ids)]
    refs = []
    writes: list[tuple[Path, pa.Table]] = []
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        series_id = str(ids[start])
        digest = _digest(months[start:end], values[start:end])
        target = series_folder(lake, series_id) / f"{digest}.parquet"
        if not target.exists():
            writes.append((target, table.slice(start, end - start)))
        refs.append(
            SeriesRef(
                series_id=series_id,
                path=str(target),
                data_hash=digest,
                n_obs=end - start,
                first_period=str(periods[start].astype("datetime64[D]")),
                last_period=str(periods[end - 1].astype("datetime64[D]")),
                missing_months=int(months[end - 1] - months[start]) + 1 - (end - start),
            )
        )
    # Thousands of small files: write them from a few threads (Parquet encoding and fsync release the GIL).
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda job: atomic_write(job[0], partial(_write_parquet, job[1])), writes))
    return refs


def read_series(ref: SeriesRef) -> pd.DataFrame:
    """Read one snapshot back as (series_id, period, value, is_filled), sorted by period.

    Read with `ParquetFile` and built from arrays: every stage reads each series once, so for thousands of
    series this is a hot path (a third of the time of `read_table(...).to_pandas()`).
    """
    with pq.ParquetFile(ref.path) as file:
        table = file.read()
    periods = table["period"].to_numpy().astype("datetime64[us]")
    order = np.argsort(periods, kind="stable")
    return pd.DataFrame(
        {
            "series_id": table["series_id"].to_numpy(zero_copy_only=False)[order],
            "period": periods[order],
            "value": table["value"].to_numpy()[order],
            "is_filled": table["is_filled"].to_numpy(zero_copy_only=False)[order],
        }
    )
