"""Reading input files into the one long shape (series_id, period, value), row by row accepted or rejected.

Accepted input forms (column names case-insensitive, configurable through `columns`):
  - long form `series_id, period, value` (also Nixtla's `unique_id, ds, y`), extra columns ignored;
  - the two-column form `Month,#Passengers` (any two columns: period then value), the series id coming
    from the `series_id` argument or the file name's stem.

Rules, each row judged on its own (the reason names the file, the row and the field):
  - period: `YYYY-MM`, `YYYY-MM-DD` or an ISO timestamp; any day normalises to the first of its month;
    years outside 1800-2200 and impossible dates (1949-02-30) are rejected.
  - value: a finite number; empty, non-numeric, NaN and infinite values are rejected; negatives are fine.
  - series id: stored literally (quotes, slashes, any script); empty or over 255 characters is rejected.
  - the same series and month twice in one file: identical values are stored once; different values are
    all rejected (neither is kept: the file contradicts itself, and a later file can settle it).
Row numbers count data rows from 1 (the header is not a row).
"""

from __future__ import annotations

import contextlib
import csv
import logging
import shutil
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from sqlalchemy.engine import Engine

from seqcast import store
from seqcast._files import atomic_copy, safe_name, sha256_file
from seqcast.config import DataPaths

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".csv", ".txt", ".parquet", ".pq")
MAX_SERIES_ID = 255
_LONG_FORMS = (("series_id", "period", "value"), ("unique_id", "ds", "y"))


class IngestError(ValueError):
    """A whole file cannot be used; the message names the file and the reason."""

    batch_id: str = ""


@dataclass
class Parsed:
    """A parsed file: valid unique rows, rejected rows with reasons, and how many rows were read."""

    rows: pd.DataFrame
    rejected: pd.DataFrame
    rows_read: int


@dataclass
class BatchReport:
    """What happened to one received file."""

    batch_id: str
    source: str
    status: str  # applied | duplicate | rejected
    rows_read: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_unchanged: int = 0
    rows_rejected: int = 0
    error: str | None = None
    archive_path: str | None = None
    series: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return self.rows_inserted + self.rows_updated


@dataclass
class RawTable:
    """A file's cells as read: the frame, each row's data-row number, and rows unreadable as table rows."""

    frame: pd.DataFrame
    row_numbers: np.ndarray
    malformed: list[tuple[int, str, str]] = field(default_factory=list)  # (row number, raw text, reason)


def read_table(path: Path) -> RawTable:
    """Read a CSV or Parquet file as it is (CSV cells as text), or raise IngestError naming the file."""
    name = path.name
    if not path.exists():
        raise IngestError(f"{name}: file not found ({path})")
    if path.stat().st_size == 0:
        raise IngestError(f"{name}: file is empty")
    with open(path, "rb") as handle:
        head = handle.read(8192)
    if path.suffix.lower() in (".parquet", ".pq") or head[:4] == b"PAR1":
        try:
            frame = pq.read_table(path).to_pandas()
        except (pa.ArrowException, OSError) as exc:
            raise IngestError(f"{name}: not a readable Parquet file ({exc})") from exc
        return RawTable(frame, np.arange(1, len(frame) + 1))
    if b"\x00" in head:
        raise IngestError(f"{name}: not a text table (binary content)")
    return _read_csv_as_text(path)


def _read_csv_as_text(path: Path) -> RawTable:
    """Every cell as text (nothing guessed, empty stays empty), with Arrow's multi-threaded reader.

    Rows with the wrong number of fields are rare; when there are any, the file is read again with
    the csv module, which knows each row's number, so that they can be rejected one by one.
    """
    name = path.name
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader([handle.readline()]), [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise IngestError(f"{name}: not a readable CSV table ({exc})") from exc
    header = [h.strip() for h in header]
    if not header or header == [""]:
        raise IngestError(f"{name}: file is empty")
    ragged: list[str] = []

    def on_invalid(row: Any) -> str:
        ragged.append(row.text)
        return "skip"

    try:
        table = pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(column_names=header, skip_rows=1),
            parse_options=pa_csv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pa_csv.ConvertOptions(
                column_types={h: pa.string() for h in header},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise IngestError(f"{name}: not a readable CSV table ({str(exc).splitlines()[0]})") from exc
    if not ragged:
        return RawTable(table.to_pandas(), np.arange(1, table.num_rows + 1))
    return _read_csv_row_by_row(path, header)


def _read_csv_row_by_row(path: Path, header: list[str]) -> RawTable:
    good: list[list[str]] = []
    numbers: list[int] = []
    malformed: list[tuple[int, str, str]] = []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for number, row in enumerate(reader, start=1):
            if len(row) == len(header):
                good.append(row)
                numbers.append(number)
            else:
                why = f"wrong number of fields: {len(row)}, expected {len(header)}"
                malformed.append((number, ",".join(row), f"{path.name} row {number}, {why}"))
    frame = pd.DataFrame(good, columns=header, dtype=object)
    return RawTable(frame, np.asarray(numbers, dtype=np.int64), malformed)


def _resolve_columns(
    frame: pd.DataFrame, name: str, columns: Mapping[str, str] | None, series_id: str | None, stem: str
) -> tuple[pd.Series, str, str]:
    """Return (series id column, period column name, value column name) for a raw frame."""
    lookup = {str(c).strip().lower(): c for c in frame.columns}
    if columns:
        wanted = {role: columns.get(role) for role in ("series_id", "period", "value")}
        missing = [
            f"{role} ('{col}')" for role, col in wanted.items() if col is not None and col.strip().lower() not in lookup
        ]
        if missing:
            raise IngestError(f"{name}: missing column {', '.join(missing)}; found {list(frame.columns)}")
        period_col = lookup[wanted["period"].lower()] if wanted["period"] else None
        value_col = lookup[wanted["value"].lower()] if wanted["value"] else None
        if period_col is None or value_col is None:
            raise IngestError(f"{name}: the column mapping needs 'period' and 'value'")
        sid_col = lookup[wanted["series_id"].lower()] if wanted["series_id"] else None
        ids = frame[sid_col] if sid_col is not None else _constant_id(frame, series_id or stem)
        return ids, period_col, value_col
    for sid, period, value in _LONG_FORMS:
        if sid in lookup or (period in lookup and value in lookup):
            missing = [c for c in (sid, period, value) if c not in lookup]
            if sid in missing and series_id:
                missing.remove(sid)
            if missing:
                raise IngestError(
                    f"{name}: missing column {', '.join(repr(c) for c in missing)}; found {list(frame.columns)}"
                )
            ids = frame[lookup[sid]] if sid in lookup else _constant_id(frame, series_id or stem)
            return ids, lookup[period], lookup[value]
    if len(frame.columns) == 2:
        period_col, value_col = frame.columns
        return _constant_id(frame, series_id or stem), period_col, value_col
    hint = " (is the delimiter a comma?)" if len(frame.columns) == 1 else ""
    raise IngestError(
        f"{name}: cannot find the columns series_id, period, value (or unique_id, ds, y, or a two-column "
        f"period,value file); found {list(frame.columns)}{hint}"
    )


def _constant_id(frame: pd.DataFrame, series_id: str) -> pd.Series:
    return pd.Series([series_id] * len(frame), index=frame.index, dtype=object)


def _parse_periods(column: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(column):
        parsed = pd.to_datetime(column)
        if parsed.dt.tz is not None:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    else:
        text = column.astype(str).str.strip()
        parsed = pd.to_datetime(text, errors="coerce", format="ISO8601")
    parsed = parsed.astype("datetime64[us]")
    in_range = (parsed.dt.year >= 1800) & (parsed.dt.year <= 2200)
    return pd.Series(parsed.where(in_range).dt.to_period("M").dt.to_timestamp().astype("datetime64[us]"))


def _parse_values(column: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(values as float, reason per row or None)."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        values = column.astype(float)
        text = None
    else:
        text = column.astype(str).str.strip()
        try:  # fast path: a clean column converts in one vectorised cast
            values = pd.Series(pc.cast(pa.array(text), pa.float64()).to_numpy(zero_copy_only=False), index=text.index)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            values = pd.to_numeric(text, errors="coerce").astype(float)
    reason = pd.Series(None, index=column.index, dtype=object)
    inf = np.isinf(values.to_numpy())
    if inf.any():
        reason[inf] = "infinite"
    nan = values.isna()
    if text is not None and nan.any():
        lowered = text.str.lower()
        reason[nan & (text == "")] = "empty"
        reason[nan & lowered.isin(["nan", "na", "n/a", "null", "none"])] = "NaN"
        reason[nan & reason.isna()] = "not a number"
    elif nan.any():
        reason[nan] = "NaN"
    return values, reason


def parse_file(path: Path, series_id: str | None = None, columns: Mapping[str, str] | None = None) -> Parsed:
    """Parse one file into valid rows and rejected rows; raise IngestError when no row is usable."""
    path = Path(path)
    name = path.name
    raw = read_table(path)
    frame = raw.frame
    if frame.empty and not raw.malformed:
        raise IngestError(f"{name}: no data rows (header only)")
    ids_raw, period_col, value_col = _resolve_columns(frame, name, columns, series_id, path.stem)
    row_number = raw.row_numbers
    n = len(frame) + len(raw.malformed)

    ids = ids_raw.astype(str).str.strip()
    periods = _parse_periods(frame[period_col])
    values, value_reason = _parse_values(frame[value_col])

    reason = pd.Series(None, index=frame.index, dtype=object)
    bad_id = (ids == "") | ids_raw.isna()
    reason[bad_id] = "field 'series_id': empty series id"
    long_id = ids.str.len() > MAX_SERIES_ID
    reason[long_id & reason.isna()] = f"field 'series_id': longer than {MAX_SERIES_ID} characters"
    bad_period = periods.isna() & reason.isna()
    period_text = frame[period_col].astype(str)
    reason[bad_period] = "field 'period': not a valid month (YYYY-MM or YYYY-MM-DD, 1800-2200): " + (
        period_text[bad_period].map(lambda s: repr(s[:40]))
    )
    bad_value = value_reason.notna() & reason.isna()
    reason[bad_value] = (
        "field 'value': "
        + value_reason[bad_value]
        + " ("
        + (frame.loc[bad_value, value_col].astype(str).map(lambda s: repr(s[:40])))
        + ")"
    )

    good = reason.isna().to_numpy()
    rows = pd.DataFrame({"series_id": ids[good].to_numpy(dtype=object), "period": periods[good], "value": values[good]})
    rows["row_number"] = row_number[good]

    # Same series and month more than once in this file.
    dup_mask = rows.duplicated(["series_id", "period"], keep=False)
    if dup_mask.any():
        dups = rows[dup_mask]
        spread = dups.groupby(["series_id", "period"], sort=False)["value"].transform("nunique")
        conflicting = dups[spread > 1]
        if len(conflicting):
            listing = conflicting.groupby(["series_id", "period"], sort=False)["row_number"].transform(
                lambda r: ", ".join(map(str, r.tolist()[:10]))
            )
            conflict_reason = (
                "field 'value': conflicting values for the same series and month in this file (rows "
                + listing
                + "); none was stored"
            )
            reason.loc[conflicting.index] = conflict_reason.to_numpy()
            rows = rows.drop(index=conflicting.index)
        rows = rows.drop_duplicates(["series_id", "period"], keep="first")

    rejected_mask = reason.notna().to_numpy()
    rejected = pd.DataFrame(
        {
            "row_number": row_number[rejected_mask],
            "raw": _raw_rows(frame.loc[rejected_mask]),
            "reason": [
                f"{name} row {r}, {why}"
                for r, why in zip(row_number[rejected_mask], reason[rejected_mask], strict=True)
            ],
        }
    )
    if raw.malformed:
        structural = pd.DataFrame(raw.malformed, columns=["row_number", "raw", "reason"])
        rejected = pd.concat([structural, rejected], ignore_index=True).sort_values("row_number", ignore_index=True)
    if rows.empty:
        first = rejected["reason"].iloc[0] if len(rejected) else "no rows"
        raise IngestError(f"{name}: no usable rows ({len(rejected)} rejected; first: {first})")
    return Parsed(rows=rows.drop(columns="row_number").reset_index(drop=True), rejected=rejected, rows_read=n)


def _raw_rows(frame: pd.DataFrame) -> list[str]:
    return [",".join("" if pd.isna(v) else str(v) for v in row) for row in frame.itertuples(index=False)]


def new_batch_id(sha256: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{sha256[:12]}-{uuid.uuid4().hex[:6]}"


def ingest_file(
    engine: Engine,
    paths: DataPaths,
    source: Path,
    series_id: str | None = None,
    columns: Mapping[str, str] | None = None,
) -> BatchReport:
    """Archive one received file, then store its rows (or record why not). Never loses the file.

    Files taken from the inbox leave it once recorded; any other source is left where it is.
    Raises IngestError (after archiving and recording) when the file as a whole is unusable.
    """
    source = Path(source)
    sha = sha256_file(source)
    batch_id = new_batch_id(sha)
    archived = atomic_copy(source, paths.archive / f"{batch_id}-{safe_name(source.stem)}{source.suffix.lower()}")
    batch = {
        "batch_id": batch_id,
        "source": str(source),
        "archive_path": str(archived),
        "sha256": sha,
        "received_at": store.utcnow(),
    }
    from_inbox = source.resolve().parent == paths.inbox.resolve()
    try:
        earlier = store.find_applied_batch(engine, sha)
        if earlier is not None:
            parsed_rows = 0
            with contextlib.suppress(IngestError):
                parsed_rows = parse_file(source, series_id, columns).rows_read
            store.record_batch(
                engine,
                {
                    **batch,
                    "status": "duplicate",
                    "rows_read": parsed_rows,
                    "rows_unchanged": parsed_rows,
                    "error": f"same content as batch {earlier}",
                },
            )
            log.info("%s: same content as batch %s, nothing changed", source.name, earlier)
            return BatchReport(
                batch_id,
                str(source),
                "duplicate",
                rows_read=parsed_rows,
                rows_unchanged=parsed_rows,
                archive_path=str(archived),
                error=f"same content as batch {earlier}",
            )
        try:
            parsed = parse_file(source, series_id, columns)
        except IngestError as exc:
            store.record_batch(engine, {**batch, "status": "rejected", "error": str(exc)})
            exc.batch_id = batch_id
            raise
        counts = store.apply_batch(engine, {**batch, "rows_read": parsed.rows_read}, parsed.rows, parsed.rejected)
        report = BatchReport(
            batch_id,
            str(source),
            "applied",
            archive_path=str(archived),
            series=sorted(parsed.rows["series_id"].unique().tolist()),
            **counts.__dict__,
        )
        log.info(
            "%s: %d rows read, %d inserted, %d updated, %d unchanged, %d rejected",
            source.name,
            report.rows_read,
            report.rows_inserted,
            report.rows_updated,
            report.rows_unchanged,
            report.rows_rejected,
        )
        return report
    finally:
        if from_inbox:
            # Recorded one way or another, and safe in the archive: the inbox copy can go.
            source.unlink(missing_ok=True)


def inbox_files(paths: DataPaths) -> list[Path]:
    """Files waiting in the inbox, oldest first (hidden and partial `.tmp-*` files are ignored)."""
    if not paths.inbox.exists():
        return []
    files = [p for p in paths.inbox.iterdir() if p.is_file() and not p.name.startswith(".")]
    return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))


def ingest_files(
    engine: Engine,
    paths: DataPaths,
    sources: Iterable[Path],
    series_id: str | None = None,
    columns: Mapping[str, str] | None = None,
) -> list[BatchReport]:
    """Ingest several files; a file-level failure is reported as a rejected batch, the rest go on."""
    reports = []
    for source in sources:
        try:
            reports.append(ingest_file(engine, paths, Path(source), series_id, columns))
        except IngestError as exc:
            log.error("%s", exc)
            reports.append(BatchReport(exc.batch_id, str(source), "rejected", error=str(exc)))
    return reports


def bundled_series_path() -> Path:
    """The bundled demo series (the tutorial's air-passengers file)."""
    return Path(__file__).parent / "data" / "air_passengers.csv"


def copy_into_inbox(paths: DataPaths, source: Path) -> Path:
    target = paths.inbox / source.name
    shutil.copyfile(source, target)
    return target
