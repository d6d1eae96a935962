"""The records stages hand on: small, frozen, JSON-able, so any runner can pass, cache and publish them.

    ingest -> Ingested          snapshot -> Snapshot (SeriesRef per series, Skip per series left out)
    validate -> Validation      train -> Fit          forecast -> Forecast      (or a Failure, per series)
    publish -> RunOutcome

Sequences are tuples and every field is a str, int, float, bool, None, a tuple, a dict or another record, so
`dumps`/`loads` round-trip them exactly; `loads` builds only the record types named here (no other code runs).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, TypeAlias

History: TypeAlias = tuple[tuple[int, float, float | None], ...]
Values: TypeAlias = tuple[float, ...]


@dataclass(frozen=True)
class SeriesRef:
    """A pointer to one series' snapshot in the lake: what per-series stages take and key caches on."""

    series_id: str
    path: str
    data_hash: str
    n_obs: int
    first_period: str
    last_period: str
    missing_months: int
    #: Set for a series to be retrained whatever the cache holds (a degraded series): part of its model key.
    retrain: str = ""

    @property
    def model_key(self) -> str:
        """What the series' own models are keyed on: its data, and a retrain mark where there is one."""
        return f"{self.data_hash}:{self.retrain}" if self.retrain else self.data_hash


@dataclass(frozen=True)
class Skip:
    """A series left out of a run, and why (too short, months missing, a failed stage)."""

    series_id: str
    reason: str


@dataclass(frozen=True)
class Failure:
    """A per-series stage that failed for one series; the others go on."""

    series_id: str
    stage: str
    reason: str


@dataclass(frozen=True)
class Batch:
    """What became of one received file (a row of `ingest_batches`)."""

    batch_id: str
    source: str
    status: str  # applied | duplicate | rejected | refused | failed
    rows_read: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_unchanged: int = 0
    rows_rejected: int = 0
    error: str | None = None
    archive_path: str | None = None
    series: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ingested:
    batches: tuple[Batch, ...]
    new_observations: int
    revised_observations: int
    #: Changes whenever the stored observations change (store id and version): keys the snapshot.
    data_version: str

    @property
    def rejected(self) -> tuple[Batch, ...]:
        return tuple(b for b in self.batches if b.status in ("rejected", "refused"))


@dataclass(frozen=True)
class Snapshot:
    eligible: tuple[SeriesRef, ...]
    skipped: tuple[Skip, ...]
    #: Months interpolated per series (with fill_gaps).
    filled: dict[str, int] = field(default_factory=dict)
    #: Series whose published forecasts degraded (`seqcast.ledger`), with why: retrained this run.
    degraded: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Scores:
    """Accuracy of one forecast against actuals (MAPE and sMAPE in percent; NaN where undefined)."""

    mae: float
    rmse: float
    mape: float
    smape: float
    mase: float


@dataclass(frozen=True)
class ModelRecord:
    """A fitted model of one series (or of all, for a global kind) and where its artifact is."""

    model_id: str
    series_id: str
    model_kind: str
    purpose: str  # holdout | final
    config_hash: str
    data_hash: str
    artifact_path: str
    artifact_sha256: str
    epochs: int
    train_seconds: float
    history: History
    #: Trained for this call (False: loaded from the store).
    trained: bool
    #: How the model was specified where the kind chooses (a statistical model's form, e.g. ETS "MAdM").
    spec: str = ""


@dataclass(frozen=True)
class Candidate:
    """One model kind's forecast of a series' holdout and its scores."""

    kind: str
    scores: Scores
    prediction: Values
    model: ModelRecord | None


@dataclass(frozen=True)
class Validation:
    """Every candidate's forecast of a series' holdout, scored. No candidates: the series was too short to hold
    any months out (it is still forecast, by what its length allows)."""

    series_id: str
    holdout_start: str
    holdout_end: str
    actual: Values
    candidates: dict[str, Candidate]
    #: The training part's spread: what errors are measured against (see `forecast.spread`).
    spread: float = float("nan")
    #: The training part's MASE scale (in-sample mean absolute seasonal-naive error).
    scale: float = float("nan")


@dataclass(frozen=True)
class Fit:
    """The final fits of a series (all of its data) and their forecasts, per kind."""

    series_id: str
    models: dict[str, ModelRecord]
    forecasts: dict[str, Values]
    #: The whole series' spread (see `forecast.spread`): intervals are this times a calibrated multiple.
    spread: float = float("nan")
    #: Whether every value is positive (intervals then multiply, and stay positive).
    positive: bool = True


@dataclass(frozen=True)
class ForecastRow:
    """A row of `forecasts` (less its run id)."""

    series_id: str
    model_kind: str
    origin: str
    period: str
    step: int
    yhat: float
    yhat_lower: float
    yhat_upper: float
    interval_level: float
    is_champion: bool
    model_id: str | None
    yhat_lower_outer: float = float("nan")
    yhat_upper_outer: float = float("nan")
    interval_level_outer: float = float("nan")


@dataclass(frozen=True)
class Forecast:
    series_id: str
    champion: str
    rows: tuple[ForecastRow, ...]
    #: Why this champion (chosen on the holdout, or what the series' length allows).
    reason: str = ""


@dataclass(frozen=True)
class Calibration:
    """Interval half-widths per candidate kind and horizon step, as multiples of a series' spread: quantiles of
    holdout errors pooled across the run's series. `inner` and `outer` are per step, for the two levels."""

    levels: tuple[float, float]
    inner: dict[str, Values]
    outer: dict[str, Values]
    #: Validated series each kind's quantiles came from.
    series: dict[str, int]


@dataclass(frozen=True)
class GlobalResult:
    """A global model as a candidate of every series it covers."""

    kind: str
    holdout: ModelRecord
    final: ModelRecord
    candidates: dict[str, Candidate]
    forecasts: dict[str, Values]
    #: Series each member covered (its training windows).
    n_series: int = 0


@dataclass(frozen=True)
class MetricRow:
    """A row of `metrics` (less its run id)."""

    series_id: str
    model_kind: str
    holdout_start: str
    holdout_end: str
    scores: Scores
    is_champion: bool
    model_id: str | None


@dataclass(frozen=True)
class Charts:
    paths: tuple[str, ...]
    #: Series whose charts could not be drawn, and why.
    failed: tuple[Skip, ...] = ()


@dataclass(frozen=True)
class RunOutcome:
    """What a run did, for humans, the UI and the run row."""

    run_id: str
    new_observations: int
    revised_observations: int
    batches: tuple[Batch, ...]
    trained: tuple[str, ...]
    reused: tuple[str, ...]
    skipped: tuple[Skip, ...]
    champions: dict[str, str]
    metrics: tuple[MetricRow, ...]
    forecasts: tuple[ForecastRow, ...]
    database: str
    data_dir: str
    plots: tuple[str, ...] = ()
    report: str = ""
    #: Per-series notes that did not stop the series (a chart not drawn).
    notes: tuple[Skip, ...] = ()
    #: Degraded series (retrained this run), with why.
    degraded: dict[str, str] = field(default_factory=dict)
    #: Series whose forecast did not change: the earlier run's published rows stand (series -> that run).
    unchanged: dict[str, str] = field(default_factory=dict)
    #: The headline numbers of the run's page (label, value), for the summary.
    headline: tuple[tuple[str, str], ...] = ()


# ---------------------------------------------------------------------------------------------- codec

RECORD_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        SeriesRef,
        Skip,
        Failure,
        Batch,
        Ingested,
        Snapshot,
        Scores,
        ModelRecord,
        Candidate,
        Validation,
        Fit,
        ForecastRow,
        Forecast,
        Calibration,
        GlobalResult,
        MetricRow,
        Charts,
        RunOutcome,
    )
}
_TAG = "__record__"
_FLOAT = "__float__"


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if type(value).__name__ not in RECORD_TYPES:
            raise TypeError(f"not a record: {type(value).__name__}")
        return {
            _TAG: type(value).__name__,
            **{f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)},
        }
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return {_FLOAT: repr(value)}  # nan, inf, -inf: kept exactly, and the JSON stays standard
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot encode {type(value).__name__} in a record")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)
    if isinstance(value, dict):
        if _FLOAT in value:
            return float(value[_FLOAT])
        if _TAG in value:
            cls = RECORD_TYPES.get(str(value[_TAG]))
            if cls is None:
                raise ValueError(f"unknown record type {value[_TAG]!r}")
            return cls(**{k: _decode(v) for k, v in value.items() if k != _TAG})
        return {k: _decode(v) for k, v in value.items()}
    return value


def dumps(value: Any) -> bytes:
    """Records (and tuples, dicts and plain values of them) as JSON bytes."""
    return json.dumps(_encode(value), allow_nan=False, separators=(",", ":")).encode()


def loads(data: bytes) -> Any:
    """The inverse of `dumps`: plain JSON, and only the record types of this module are built."""
    return _decode(json.loads(data))


#: The serializer a stored task result names when it holds `dumps` of records (the Prefect layer writes it).
RESULT_SERIALIZER = "seqcast-records"


def stored_result_error(data: bytes) -> str | None:
    """Why `data` is not a stored task result of seqcast's records (JSON naming `RESULT_SERIALIZER`, the
    result a string of `dumps`), or None if it is one."""
    try:
        stored = json.loads(data)
    except ValueError:
        return "not a task result record"
    metadata = stored.get("metadata") if isinstance(stored, dict) else None
    serializer = metadata.get("serializer") if isinstance(metadata, dict) else None
    if serializer != {"type": RESULT_SERIALIZER} or not isinstance(stored.get("result"), str):
        return f"refusing a task result not written as {RESULT_SERIALIZER}"
    return None
