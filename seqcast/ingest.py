"""Reading input files into the one long shape (series_id, period, value), row by row accepted or rejected.

Accepted input forms (column names case-insensitive, configurable through `columns`):
  - long form `series_id, period, value` (also Nixtla's `unique_id, ds, y`), extra columns ignored;
  - the two-column form `Month,#Passengers` (any two columns: period then value), the series id coming
    from the `series_id` argument or the file name's stem.

Rules, each row judged on its own (the reason names the file, the row and the field):
  - period: `YYYY-MM`, `YYYY-MM-DD` or an ISO timestamp (with or without an offset or `Z`); the month is the
    wall-clock month as written (`2020-02-01T00:00:00+01:00` is February, and so is a Parquet timestamp at
    midnight on the 1st in Europe/Berlin); any day normalises to the first of its month; years outside
    1800-2200 and impossible dates (1949-02-30) are rejected.
  - value: a finite number; empty, non-numeric, NaN and infinite values are rejected; negatives are fine.
  - series id: stored literally (quotes, slashes, any script); empty, over 255 characters or holding a
    control character (a NUL, a line break) is rejected.
  - the same series and month twice in one file: identical values are stored once; different values are
    all rejected (neither is kept: the file contradicts itself, and a later file can settle it).
Row numbers count data rows from 1 (the header is not a row).

What happens to a received file (`ingest_file`): it is copied to `archive/` first, then parsed from that copy
and stored, and its batch row records the outcome (applied, duplicate, rejected, refused or failed). A file
leaves `inbox/` only once that row is committed: an unexpected error (the database gone, a full disk, an
interrupt) leaves it where it was, for the next run.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
import shutil
import stat
import tempfile
import uuid
import warnings
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
from seqcast._files import file_mode, safe_name, safe_suffix
from seqcast.config import DataPaths
from seqcast.errors import one_line
from seqcast.records import Batch

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".csv", ".txt", ".parquet", ".pq")
MAX_SERIES_ID = 255
_LONG_FORMS = (("series_id", "period", "value"), ("unique_id", "ds", "y"))
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# An ISO time of day with an offset or Z after it: the offset is dropped, the wall-clock time kept.
_OFFSET = re.compile(r"(?<=[T ]\d\d:\d\d)((?::\d\d(?:\.\d+)?)?)\s*(?:Z|[+-]\d\d(?::?\d\d)?)$", re.IGNORECASE)


class IngestError(ValueError):
    """A whole file cannot be used; the message names the file and the reason.

    Attributes:
        batch_id: the batch that recorded it (once recorded).
        rejected: the rows rejected one by one, when it was rows that made the file unusable.
        rows_read: data rows read before the file was judged unusable.
    """

    def __init__(self, message: str, rejected: pd.DataFrame | None = None, rows_read: int = 0) -> None:
        super().__init__(message)
        self.batch_id = ""
        self.rejected = rejected
        self.rows_read = rows_read


class IngestFailure(RuntimeError):
    """A file could not be ingested for a reason other than its content (the database, the disk, a bug, an
    interrupt); it was left where it was, so the next run tries again. The message is one line."""

    def __init__(self, message: str, batch_id: str = "") -> None:
        super().__init__(message)
        self.batch_id = batch_id


@dataclass
class Parsed:
    """A parsed file: valid unique rows, rejected rows with reasons, and how many rows were read."""

    rows: pd.DataFrame
    rejected: pd.DataFrame
    rows_read: int


#: What became of a received file (the record the pipeline hands on).
BatchReport = Batch


@dataclass
class RawTable:
    """A file's cells as read: the frame, each row's data-row number, and rows unreadable as table rows."""

    frame: pd.DataFrame
    row_numbers: np.ndarray
    malformed: list[tuple[int, str, str]] = field(default_factory=list)  # (row number, raw text, reason)
    #: Columns holding lists, maps or structs (Parquet's nested types).
    nested: dict[str, str] = field(default_factory=dict)


def read_table(path: Path, name: str | None = None) -> RawTable:
    """Read a CSV or Parquet file as it is (CSV cells as text), or raise IngestError naming the file.

    Args:
        name: the file's name in messages (default: its own).
    """
    name = name or path.name
    if not path.exists():
        raise IngestError(f"{name}: file not found ({path})")
    if not path.is_file():
        raise IngestError(f"{name}: not a regular file")
    if path.stat().st_size == 0:
        raise IngestError(f"{name}: file is empty")
    with open(path, "rb") as handle:
        head = handle.read(8192)
    if path.suffix.lower() in (".parquet", ".pq") or head[:4] == b"PAR1":
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            raise IngestError(f"{name}: not a readable Parquet file ({str(exc).splitlines()[0]})") from exc
        _check_header(name, [str(c) for c in table.column_names])
        nested = {f.name: str(f.type) for f in table.schema if pa.types.is_nested(f.type)}
        frame = table.to_pandas()
        return RawTable(frame, np.arange(1, len(frame) + 1), nested=nested)
    if b"\x00" in head:
        raise IngestError(f"{name}: not a text table (binary content)")
    return _read_csv_as_text(path, name)


def _check_header(name: str, header: list[str]) -> None:
    seen: dict[str, str] = {}
    for column in header:
        key = column.strip().lower()
        if key in seen:
            raise IngestError(f"{name}: column name {column.strip()!r} appears more than once in the header")
        seen[key] = column


def _read_csv_as_text(path: Path, name: str) -> RawTable:
    """Every cell as text (nothing guessed, empty stays empty), with Arrow's multi-threaded reader.

    Rows with the wrong number of fields are rare; when there are any, the file is read again with
    the csv module, which knows each row's number, so that they can be rejected one by one.
    """
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader([handle.readline()]), [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise IngestError(f"{name}: not a readable CSV table ({exc})") from exc
    header = [h.strip() for h in header]
    if not header or header == [""]:
        raise IngestError(f"{name}: file is empty")
    _check_header(name, header)
    ragged: list[str] = []

    def on_invalid(row: Any) -> str:
        ragged.append(row.text)
        return "skip"

    def read(block_size: int) -> pa.Table:
        return pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(column_names=header, skip_rows=1, block_size=block_size),
            parse_options=pa_csv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pa_csv.ConvertOptions(
                column_types={h: pa.string() for h in header},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )

    try:
        try:
            table = read(1 << 20)
        except pa.ArrowInvalid as exc:
            if "straddling" not in str(exc):
                raise
            # A row longer than a block: one block for the whole file (rows are then judged one by one).
            ragged.clear()
            table = read(min(path.stat().st_size + 1, (1 << 31) - 1))
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise IngestError(f"{name}: not a readable CSV table ({str(exc).splitlines()[0]})") from exc
    if not ragged:
        # Arrow-backed text: stripping and checking a million cells runs in Arrow's kernels, not row by row.
        frame = table.to_pandas(types_mapper=lambda t: pd.StringDtype("pyarrow") if t == pa.string() else None)
        return RawTable(frame, np.arange(1, table.num_rows + 1))
    return _read_csv_row_by_row(path, name, header)


def _read_csv_row_by_row(path: Path, name: str, header: list[str]) -> RawTable:
    good: list[list[str]] = []
    numbers: list[int] = []
    malformed: list[tuple[int, str, str]] = []
    csv.field_size_limit(1 << 30)  # a field may be long; the row is judged, not the reader
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for number, row in enumerate(reader, start=1):
            if len(row) == len(header):
                good.append(row)
                numbers.append(number)
            else:
                why = f"wrong number of fields: {len(row)}, expected {len(header)}"
                malformed.append((number, ",".join(row), f"{name} row {number}, {why}"))
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
        period_name, value_name = wanted["period"], wanted["value"]
        if period_name is None or value_name is None:
            raise IngestError(f"{name}: the column mapping needs 'period' and 'value'")
        sid_name = wanted["series_id"]
        ids = frame[lookup[sid_name.lower()]] if sid_name else _constant_id(frame, series_id or stem)
        return ids, lookup[period_name.lower()], lookup[value_name.lower()]
    for sid, period, value in _LONG_FORMS:
        if sid in lookup or (period in lookup and value in lookup):
            missing_cols = [c for c in (sid, period, value) if c not in lookup]
            if sid in missing_cols and (series_id or len(frame.columns) == 2):
                missing_cols.remove(sid)  # a two-column file: its series is named by the argument or the file
            if missing_cols:
                raise IngestError(
                    f"{name}: missing column {', '.join(repr(c) for c in missing_cols)}; found {list(frame.columns)}"
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


def _check_scalar(raw: RawTable, column: object, name: str, role: str) -> None:
    """Refuse a column of lists, maps or structs (Parquet allows them): a field holds one value."""
    if str(column) in raw.nested:
        kind = raw.nested[str(column)]
        raise IngestError(f"{name}: column {str(column)!r} ({role}) holds {kind} values, not single values")


_ARROW_TEXT = pd.StringDtype("pyarrow")


def _text(column: pd.Series) -> pd.Series:
    """A column as Arrow-backed text (string operations then run in Arrow's kernels)."""
    return column if column.dtype == _ARROW_TEXT else column.astype(_ARROW_TEXT)


def _constant_id(frame: pd.DataFrame, series_id: str) -> pd.Series:
    return pd.Series([series_id] * len(frame), index=frame.index, dtype=object)


def _parse_periods(column: pd.Series) -> pd.Series:
    """Months (first of the month, datetime64) or NaT; the month is the wall-clock month as written."""
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        parsed = column.dt.tz_localize(None)  # local wall-clock time, not converted to UTC
    elif pd.api.types.is_datetime64_any_dtype(column):
        parsed = pd.to_datetime(column)
    else:
        text = _text(column).str.strip()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", FutureWarning)  # pandas' warning on offsets differing by row
                parsed = pd.to_datetime(text, errors="coerce", format="ISO8601")
        except (ValueError, TypeError, FutureWarning):
            parsed = None
        if parsed is None or not isinstance(parsed.dtype, np.dtype):  # an offset or Z: keep the wall clock
            parsed = pd.to_datetime(text.str.replace(_OFFSET, r"\1", regex=True), errors="coerce", format="ISO8601")
            if isinstance(parsed.dtype, pd.DatetimeTZDtype):
                parsed = parsed.dt.tz_localize(None)
    parsed = parsed.astype("datetime64[us]")
    in_range = (parsed.dt.year >= 1800) & (parsed.dt.year <= 2200)
    return pd.Series(parsed.where(in_range).dt.to_period("M").dt.to_timestamp().astype("datetime64[us]"))


def _parse_values(column: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(values as float, reason per row or None)."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        values = column.astype(float)
        text = None
    else:
        text = _text(column).str.strip()
        try:  # fast path: a clean column converts in one vectorised cast
            values = pd.Series(pc.cast(pa.array(text), pa.float64()).to_numpy(zero_copy_only=False), index=text.index)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
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


def parse_file(
    path: Path,
    series_id: str | None = None,
    columns: Mapping[str, str] | None = None,
    name: str | None = None,
) -> Parsed:
    """Parse one file into valid rows and rejected rows; raise IngestError when no row is usable.

    Args:
        series_id: the id of a two-column file's series (default: the file name's stem).
        name: the file's name, in messages and for the default series id (default: its own).
    """
    path = Path(path)
    name = name or path.name
    raw = read_table(path, name)
    frame = raw.frame
    if frame.empty and not raw.malformed:
        raise IngestError(f"{name}: no data rows (header only)")
    ids_raw, period_col, value_col = _resolve_columns(frame, name, columns, series_id, Path(name).stem)
    for column, role in ((ids_raw.name, "series id"), (period_col, "period"), (value_col, "value")):
        _check_scalar(raw, column, name, role)
    row_number = raw.row_numbers
    n = len(frame) + len(raw.malformed)

    ids = _text(ids_raw).str.strip()
    periods = _parse_periods(frame[period_col])
    values, value_reason = _parse_values(frame[value_col])

    reason = pd.Series(None, index=frame.index, dtype=object)
    bad_id = (ids == "") | ids_raw.isna()
    reason[bad_id] = "field 'series_id': empty series id"
    long_id = ids.str.len() > MAX_SERIES_ID
    reason[long_id & reason.isna()] = f"field 'series_id': longer than {MAX_SERIES_ID} characters"
    control = ids.str.contains(_CONTROL)
    reason[control & reason.isna()] = "field 'series_id': holds a control character (NUL, line break, tab)"
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
        raise IngestError(f"{name}: no usable rows ({len(rejected)} rejected; first: {first})", rejected, n)
    return Parsed(rows=rows.drop(columns="row_number").reset_index(drop=True), rejected=rejected, rows_read=n)


def _cell(value: Any) -> str:
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return ""
    return str(value)


def _raw_rows(frame: pd.DataFrame) -> list[str]:
    return [",".join(_cell(v) for v in row) for row in frame.itertuples(index=False)]


# ----------------------------------------------------------------------------------------- received files


def new_batch_id(sha256: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{sha256[:12]}-{uuid.uuid4().hex[:6]}"


def inbox_files(paths: DataPaths) -> list[Path]:
    """Entries waiting in the inbox, oldest first: files, and anything else there (links, folders), which
    ingest refuses. Hidden and partial `.tmp-*` entries are ignored."""
    if not paths.inbox.exists():
        return []
    entries = []
    for entry in paths.inbox.iterdir():
        if entry.name.startswith("."):
            continue
        try:
            entries.append((entry.lstat().st_mtime, entry.name, entry))
        except FileNotFoundError:  # taken away meanwhile
            continue
    return [entry for _, _, entry in sorted(entries)]


def _in_inbox(source: Path, paths: DataPaths) -> bool:
    try:
        return source.absolute().parent.resolve() == paths.inbox.resolve()
    except OSError:
        return False


def _not_regular(source: Path) -> str | None:
    """Why an inbox entry is refused (checked without following it), or None for a regular file."""
    mode = source.lstat().st_mode
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if not stat.S_ISREG(mode):
        return "a special file (pipe, socket or device)"
    return None


def _refuse(engine: Engine, paths: DataPaths, source: Path, what: str) -> BatchReport:
    """Record an inbox entry that is not a regular file and move it (the entry itself) out of the inbox."""
    batch_id = new_batch_id(hashlib.sha256(str(source).encode()).hexdigest())
    paths.refused.mkdir(parents=True, exist_ok=True)
    target = paths.refused / f"{batch_id}-{safe_name(source.stem)}{safe_suffix(source.name)}"
    error = f"{source.name}: refused: {what}, not a regular file; moved to {target}"
    store.record_batch(
        engine,
        {
            "batch_id": batch_id,
            "source": str(source),
            "archive_path": str(target),
            "sha256": "",
            "received_at": store.utcnow(),
            "status": "refused",
            "error": error,
        },
    )
    os.rename(source, target)  # renames the link or folder, never what a link points to
    log.warning("%s", error)
    return BatchReport(batch_id, str(source), "refused", error=error, archive_path=str(target))


def _archive(source: Path, paths: DataPaths, no_follow: bool) -> tuple[str, str, Path]:
    """Copy a received file into the archive, hashing it on the way: (sha256, batch id, archived path).

    Read through one descriptor opened without following links (for inbox entries) and checked to be a
    regular file, so what is archived is what was checked.
    """
    flags = os.O_RDONLY | (os.O_NOFOLLOW if no_follow and hasattr(os, "O_NOFOLLOW") else 0)
    fd = os.open(source, flags | getattr(os, "O_NONBLOCK", 0))
    digest = hashlib.sha256()
    paths.archive.mkdir(parents=True, exist_ok=True)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise IngestError(f"{source.name}: not a regular file")
        out_fd, tmp_name = tempfile.mkstemp(prefix=".tmp-receiving-", dir=paths.archive)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(out_fd, "wb") as out:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, file_mode())
            sha = digest.hexdigest()
            batch_id = new_batch_id(sha)
            target = paths.archive / f"{batch_id}-{safe_name(source.stem)}{safe_suffix(source.name)}"
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return sha, batch_id, target


def ingest_file(
    engine: Engine,
    paths: DataPaths,
    source: Path,
    series_id: str | None = None,
    columns: Mapping[str, str] | None = None,
) -> BatchReport:
    """Archive one received file, then store its rows (or record why not). Never loses the file.

    Files taken from the inbox leave it once their batch row is committed; any other source is left where it
    is. Inbox entries that are not regular files (links, folders) are refused and moved to `refused/`.

    Raises:
        IngestError: the file as a whole is unusable (archived and recorded as rejected first).
        IngestFailure: anything else went wrong (recorded as failed where the database still answers); the
            file stays where it was.
    """
    source = Path(source)
    from_inbox = _in_inbox(source, paths)
    if from_inbox:
        what = _not_regular(source)
        if what is not None:
            return _refuse(engine, paths, source, what)
    elif not source.exists():
        raise IngestError(f"{source.name}: file not found ({source})")
    recorded = False
    batch: dict[str, Any] = {}
    try:
        sha, batch_id, archived = _archive(source, paths, no_follow=from_inbox)
        batch = {
            "batch_id": batch_id,
            "source": str(source),
            "archive_path": str(archived),
            "sha256": sha,
            "received_at": store.utcnow(),
        }
        try:
            parsed = parse_file(archived, series_id, columns, name=source.name)
        except IngestError as exc:
            store.record_batch(
                engine,
                {
                    **batch,
                    "status": "rejected",
                    "error": str(exc),
                    "rows_read": exc.rows_read,
                    "rows_rejected": 0 if exc.rejected is None else len(exc.rejected),
                },
                exc.rejected,
            )
            recorded = True
            exc.batch_id = batch_id
            raise
        counts = store.apply_batch(engine, {**batch, "rows_read": parsed.rows_read}, parsed.rows, parsed.rejected)
        recorded = True
    except IngestError:
        raise
    except Exception as exc:
        raise _failed(engine, source, batch, exc, from_inbox) from exc
    finally:
        if from_inbox and recorded:
            # Recorded one way or another, and safe in the archive: the inbox copy can go.
            source.unlink(missing_ok=True)
    series = tuple(sorted(str(s) for s in parsed.rows["series_id"].unique()))
    error = f"same rows as batch {counts.duplicate_of}" if counts.duplicate_of else None
    report = BatchReport(
        batch["batch_id"],
        str(source),
        counts.status,
        rows_read=counts.rows_read,
        rows_inserted=counts.rows_inserted,
        rows_updated=counts.rows_updated,
        rows_unchanged=counts.rows_unchanged,
        rows_rejected=counts.rows_rejected,
        error=error,
        archive_path=str(batch["archive_path"]),
        series=series,
    )
    if counts.duplicate_of:
        log.info("%s: same rows as batch %s, nothing changed", source.name, counts.duplicate_of)
    else:
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


def _failed(engine: Engine, source: Path, batch: dict[str, Any], exc: Exception, from_inbox: bool) -> IngestFailure:
    """Record an unexpected failure (if the database still answers) and say, in one line, that the file stays."""
    reason = one_line(exc)
    where = "left in the inbox" if from_inbox else "left where it is"
    message = f"{source.name}: not ingested ({reason}); the file is {where}, and the next run tries again"
    batch_id = str(batch.get("batch_id", ""))
    if batch_id:
        try:
            store.record_batch(engine, {**batch, "status": "failed", "error": message})
        except Exception as record_exc:  # the database is what failed: nothing more to record
            log.debug("could not record the failed batch: %s", one_line(record_exc))
    log.error("%s", message)
    return IngestFailure(message, batch_id)


def ingest_files(
    engine: Engine,
    paths: DataPaths,
    sources: Iterable[Path],
    series_id: str | None = None,
    columns: Mapping[str, str] | None = None,
) -> list[BatchReport]:
    """Ingest several files; a file that is rejected or fails is reported as such and the rest go on."""
    reports = []
    for source in sources:
        try:
            reports.append(ingest_file(engine, paths, Path(source), series_id, columns))
        except IngestError as exc:
            log.error("%s", exc)
            reports.append(BatchReport(exc.batch_id, str(source), "rejected", error=str(exc)))
        except IngestFailure as exc:
            reports.append(BatchReport(exc.batch_id, str(source), "failed", error=str(exc)))
    changed = {s for r in reports if r.rows_inserted or r.rows_updated for s in r.series}
    if changed:
        # The months just observed settle earlier forecasts: the ledger records how they did.
        from seqcast import ledger

        ledger.record_outcomes(engine, changed)
    return reports


def bundled_series_path() -> Path:
    """The bundled demo series (the tutorial's air-passengers file)."""
    return Path(__file__).parent / "data" / "air_passengers.csv"


def copy_into_inbox(paths: DataPaths, source: Path) -> Path:
    target = paths.inbox / source.name
    shutil.copyfile(source, target)
    return target
