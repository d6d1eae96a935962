"""Published results as DataFrames in the forecasting ecosystem's column names (statsforecast, utilsforecast).

    import seqcast
    seqcast.read_forecasts()                       # the default data folder (or SEQCAST_DB_URL)
    seqcast.read_forecasts("postgresql+psycopg://...", models="all")
    seqcast.read_metrics("path/to/seqcast-data")
    seqcast.read_accuracy(window="all_time")

Series are `unique_id`, months `ds` (datetime64, the first of the month); a forecast is a column named by what
made it, with bounds `<name>-lo-80` / `<name>-hi-80` per interval level, as statsforecast's `forecast` returns
them. The published (champion) forecast is the column `seqcast`; `model` says which kind made it. Reading never
writes: a read-only copy of a data folder can be read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from sqlalchemy.engine import Engine

from seqcast import store

#: The column of the published forecast.
PUBLISHED = "seqcast"
WINDOWS = ("last_12_months", "all_time")


def _url(source: str | Path | None) -> Any:
    """A database URL for a URL, a data folder or a SQLite file; the configured database for None."""
    if source is None:
        from seqcast.config import load_config

        return load_config().database_url()
    text = str(source)
    if "://" in text:
        return text
    path = Path(source)
    return store.sqlite_url(path / "seqcast.db" if path.is_dir() else path)


@contextmanager
def _reader(source: str | Path | None) -> Iterator[Engine]:
    engine = store.reader(_url(source))
    try:
        yield engine
    finally:
        engine.dispose()


def _label(level: Any) -> str:
    return f"{round(float(level) * 100):g}"


def _bounds(frame: pd.DataFrame, name: pd.Series | str) -> dict[str, pd.Series]:
    """`<name>-lo-<level>` / `<name>-hi-<level>` columns from both interval pairs of forecast rows."""
    out: dict[str, pd.Series] = {}
    for lo, hi, level in (
        ("yhat_lower", "yhat_upper", "interval_level"),
        ("yhat_lower_outer", "yhat_upper_outer", "interval_level_outer"),
    ):
        for value in sorted({float(v) for v in frame[level].dropna()}):
            rows = frame[level].astype(float) == value
            label = _label(value)
            out[f"{name}-lo-{label}"] = frame[lo].where(rows).astype(float)
            out[f"{name}-hi-{label}"] = frame[hi].where(rows).astype(float)
    return out


def _ecosystem(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.rename(columns={"series_id": "unique_id", "period": "ds", "model_kind": "model"})
    if "ds" in frame:
        frame["ds"] = pd.to_datetime(frame["ds"])
    return frame


def read_forecasts(
    source: str | Path | None = None,
    *,
    series_id: str | None = None,
    models: Literal["published", "all"] = "published",
) -> pd.DataFrame:
    """The latest published forecasts.

    Args:
        source: a database URL, a data folder or its SQLite file; None: the configured one (SEQCAST_DB_URL,
            SEQCAST_DATA_DIR, ./seqcast-data).
        series_id: one series only.
        models: "published": the champion per series, as column `seqcast` (with `model`, `step`, `origin`,
            `run_id`, `published_at`); "all": every model the publishing run scored, one column each, as
            statsforecast's `forecast` returns them.

    Returns:
        One row per series and month, sorted by `unique_id, ds`.
    """
    with _reader(source) as engine:
        if models == "published":
            rows = store.select_rows(engine, "latest_forecasts", series_id)
        elif models == "all":
            rows = _all_models(engine, series_id)
        else:
            raise ValueError(f"models must be 'published' or 'all', not {models!r}")
    if rows.empty:
        return pd.DataFrame(columns=["unique_id", "ds", PUBLISHED])
    rows = rows.sort_values(["series_id", "period"], kind="stable").reset_index(drop=True)
    if models == "published":
        out = pd.DataFrame({"unique_id": rows["series_id"], "ds": rows["period"], PUBLISHED: rows["yhat"]})
        out = out.assign(**_bounds(rows, PUBLISHED))
        for column in ("model_kind", "step", "origin", "run_id", "published_at"):
            out[column] = rows[column]
        return _ecosystem(out)
    wide = rows.pivot_table(index=["series_id", "period"], columns="model_kind", values="yhat", aggfunc="first")
    parts = [wide]
    for kind, group in rows.groupby("model_kind", sort=True):
        bounds = pd.DataFrame(_bounds(group, str(kind)))
        bounds.index = pd.MultiIndex.from_frame(group[["series_id", "period"]])
        parts.append(bounds)
    out = pd.concat(parts, axis=1).reset_index()
    out.columns.name = None
    return _ecosystem(out)


def _all_models(engine: Engine, series_id: str | None) -> pd.DataFrame:
    """Every model's forecast rows from each series' latest published run."""
    published = store.select_rows(engine, "latest_forecasts", series_id)
    frames = [
        store.select_rows(engine, "forecasts", sid, {"run_id": rid})
        for sid, rid in published[["series_id", "run_id"]].drop_duplicates().itertuples(index=False)
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_metrics(source: str | Path | None = None, *, series_id: str | None = None) -> pd.DataFrame:
    """The holdout metrics of each series' latest publishing run (`latest_metrics`): one row per series and model,
    columns `unique_id, model`, the scores (MAPE and sMAPE in percent), `is_champion`, `run_id`, `published_at`."""
    with _reader(source) as engine:
        rows = store.select_rows(engine, "latest_metrics", series_id)
    return _ecosystem(rows.sort_values(["series_id", "model_kind"]).reset_index(drop=True))


def read_accuracy(
    source: str | Path | None = None,
    *,
    series_id: str | None = None,
    window: Literal["last_12_months", "all_time"] = "last_12_months",
    published_only: bool = False,
) -> pd.DataFrame:
    """Realised accuracy from the forecast ledger: one row per series and model (`forecast_accuracy`), or per
    series for the published forecasts whichever model made them (`champion_accuracy`, `published_only`).

    Columns `unique_id, model` (not with `published_only`), `months`, `mae`, `mase`, `smape`, `bias`, `coverage` and
    `interval_level` (and the outer pair), `last_published_at`. Empty until actuals arrive for forecast months.
    """
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {', '.join(WINDOWS)}, not {window!r}")
    view = "champion_accuracy" if published_only else "forecast_accuracy"
    with _reader(source) as engine:
        rows = store.select_rows(engine, view, series_id, {"window_name": window})
    order = ["series_id"] if published_only else ["series_id", "model_kind"]
    return _ecosystem(rows.sort_values(order).reset_index(drop=True))


__all__ = ["PUBLISHED", "read_accuracy", "read_forecasts", "read_metrics"]
