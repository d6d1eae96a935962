"""Parquet copies of the observations, one content-addressed file per series: what training reads."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from seqcast._files import atomic_write, safe_name

_SCHEMA = pa.schema(
    [
        ("series_id", pa.string()),
        ("period", pa.date32()),
        ("value", pa.float64()),
        ("is_filled", pa.bool_()),
    ]
)


@dataclass(frozen=True)
class SeriesRef:
    """A small, JSON-able pointer to one series' snapshot: what tasks pass around and key caches on."""

    series_id: str
    path: str
    data_hash: str
    n_obs: int
    first_period: str
    last_period: str
    missing_months: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def data_hash(periods: pd.Series, values: pd.Series) -> str:
    """Hash of a series' sorted (period, value) rows."""
    order = np.argsort(periods.to_numpy())
    months = periods.to_numpy()[order].astype("datetime64[M]").astype(np.int64)
    vals = values.to_numpy(dtype=np.float64)[order]
    return hashlib.sha256(months.tobytes() + vals.tobytes()).hexdigest()[:32]


def _write_parquet(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path)


def series_folder(lake: Path, series_id: str) -> Path:
    return lake / f"series={safe_name(series_id)}"


def snapshot(observations: pd.DataFrame, lake: Path) -> list[SeriesRef]:
    """Write each series' rows to `lake/series=<safe id>/<data hash>.parquet` unless already there."""
    refs = []
    writes: list[tuple[Path, pa.Table]] = []
    for series_id, group in observations.groupby("series_id", sort=True):
        group = group.sort_values("period")
        digest = data_hash(group["period"], group["value"])
        target = series_folder(lake, str(series_id)) / f"{digest}.parquet"
        if not target.exists():
            table = pa.Table.from_pandas(
                group[["series_id", "period", "value", "is_filled"]].assign(period=group["period"].dt.date),
                schema=_SCHEMA,
                preserve_index=False,
            )
            writes.append((target, table))
        months = group["period"].to_numpy().astype("datetime64[M]").astype(np.int64)
        span = int(months[-1] - months[0]) + 1
        refs.append(
            SeriesRef(
                series_id=str(series_id),
                path=str(target),
                data_hash=digest,
                n_obs=len(group),
                first_period=str(group["period"].iloc[0].date()),
                last_period=str(group["period"].iloc[-1].date()),
                missing_months=span - len(group),
            )
        )
    # Thousands of small files: write them from a few threads (Parquet encoding and fsync release the GIL).
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda job: atomic_write(job[0], partial(_write_parquet, job[1])), writes))
    return refs


def read_series(ref: SeriesRef | dict) -> pd.DataFrame:
    """Read one snapshot back as (series_id, period, value, is_filled), sorted by period."""
    path = ref.path if isinstance(ref, SeriesRef) else str(ref["path"])
    frame = pq.read_table(path).to_pandas()
    frame["period"] = pd.to_datetime(frame["period"]).astype("datetime64[us]")
    return frame.sort_values("period").reset_index(drop=True)
