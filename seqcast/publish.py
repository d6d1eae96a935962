"""Publishing as a pure mapping: a run's records become the rows of its tables and its outcome.

No training, no database: `run_rows` takes the stages' records (and which models the store already knows)
and returns what `store.write_run` writes in one transaction, and the `RunOutcome` people read.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from seqcast.records import (
    Failure,
    Fit,
    Forecast,
    Ingested,
    MetricRow,
    ModelRecord,
    RunOutcome,
    Skip,
    Snapshot,
    Validation,
)
from seqcast.store.writes import RunRows


def failures(*stages: Sequence[Any]) -> dict[str, str]:
    """Each failed series' first failure, from the results of any stages."""
    out: dict[str, str] = {}
    for results in stages:
        for r in results:
            if isinstance(r, Failure):
                out.setdefault(r.series_id, f"{r.stage}: {r.reason}")
    return out


def published(validations: Sequence[Any], fits: Sequence[Any], forecasts: Sequence[Any]) -> dict[str, Forecast]:
    """The series a run publishes: those with a forecast and no failure in any stage."""
    failed = failures(validations, fits, forecasts)
    return {f.series_id: f for f in forecasts if isinstance(f, Forecast) and f.series_id not in failed}


def model_records(validations: Sequence[Any], fits: Sequence[Any]) -> list[ModelRecord]:
    """Every model record the stages hand on (holdout fits, then final fits), each once."""
    seen: dict[str, ModelRecord] = {}
    for v in validations:
        if isinstance(v, Validation):
            for c in v.candidates.values():
                if c.model is not None:
                    seen.setdefault(c.model.model_id, c.model)
    for f in fits:
        if isinstance(f, Fit):
            for r in f.models.values():
                seen.setdefault(r.model_id, r)
    return list(seen.values())


_OPTIONAL_FLOATS = ("yhat_lower_outer", "yhat_upper_outer", "interval_level_outer")


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def digest(validation: Validation, forecast: Forecast) -> str:
    """Hash of what a series publishes (its holdout scores and forecast rows): equal exactly when a run would
    publish the same rows for it."""
    payload = [
        [validation.holdout_start, validation.holdout_end, forecast.champion],
        sorted([k, [_finite(v) for v in c.scores.__dict__.values()]] for k, c in validation.candidates.items()),
        [{k: (_finite(v) if isinstance(v, float) else v) for k, v in r.__dict__.items()} for r in forecast.rows],
    ]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def unchanged(
    validations: Sequence[Any], forecasts: Sequence[Any], previous: Mapping[str, tuple[str, str]]
) -> dict[str, str]:
    """The series whose published rows would repeat the stored ones (series -> the run whose rows stand).

    Args:
        previous: per series, the run whose rows are its latest published ones and their `digest`.
    """
    by_val = {v.series_id: v for v in validations if isinstance(v, Validation)}
    out = {}
    for f in forecasts:
        if isinstance(f, Forecast) and f.series_id in previous and f.series_id in by_val:
            run_id, sha = previous[f.series_id]
            if digest(by_val[f.series_id], f) == sha:
                out[f.series_id] = run_id
    return out


def run_rows(
    run_id: str,
    ingested: Ingested,
    snap: Snapshot,
    validations: Sequence[Any],
    fits: Sequence[Any],
    forecasts: Sequence[Any],
    known_models: set[str],
    now: datetime,
    database: str,
    data_dir: str,
    previous: Mapping[str, tuple[str, str]] | None = None,
) -> tuple[RunRows, RunOutcome]:
    """The rows a run writes, and its outcome.

    A series is `trained` when any of its models was not yet published (a fit left by a killed run counts
    here) or it has no stored model, `reused` otherwise; a series that failed in a stage is `failed`; one the
    snapshot left out, `skipped`. A series whose rows would repeat those an earlier run published (`previous`,
    see `unchanged`) gets no metrics or forecast rows: the earlier run's stand, and its status row names it.
    """
    same = unchanged(validations, forecasts, previous or {})
    by_val = {v.series_id: v for v in validations if isinstance(v, Validation)}
    by_fit = {f.series_id: f for f in fits if isinstance(f, Fit)}
    by_fc = published(validations, fits, forecasts)
    failed = failures(validations, fits, forecasts)
    trained: list[str] = []
    reused: list[str] = []
    not_published: list[Skip] = []
    model_rows: dict[str, dict[str, Any]] = {}
    history_rows: dict[tuple[str, int], dict[str, Any]] = {}
    metric_rows: list[dict[str, Any]] = []
    forecast_rows: list[dict[str, Any]] = []
    status_rows: list[dict[str, Any]] = []
    champions: dict[str, str] = {}
    metrics_out: list[MetricRow] = []
    forecasts_out = []
    for ref in snap.eligible:
        sid = ref.series_id
        if sid not in by_fc:
            not_published.append(Skip(sid, f"training failed: {failed.get(sid, 'no forecast produced')}"))
            continue
        validation, fit, forecast = by_val[sid], by_fit[sid], by_fc[sid]
        records = [c.model for c in validation.candidates.values() if c.model is not None] + list(fit.models.values())
        # (A series with no stored model, forecast by a baseline alone, is computed afresh: "trained".)
        is_new = not records or any(r.model_id not in known_models for r in records)
        (trained if is_new else reused).append(sid)
        filled = snap.filled.get(sid)
        degraded = snap.degraded.get(sid)
        stands = same.get(sid)
        why = "new or revised data" if is_new else "data and config unchanged: stored models reused"
        status_rows.append(
            {
                "run_id": run_id,
                "series_id": sid,
                "status": "trained" if is_new else "reused",
                "reason": (f"{degraded}; retrained" if degraded else why)
                + (f"; {filled} missing month(s) interpolated" if filled else "")
                + (f"; published {forecast.reason}" if forecast.reason else "")
                + (f"; forecast unchanged: run {stands}'s rows stand" if stands else ""),
                "degraded": degraded is not None,
                "forecast_run_id": stands or run_id,
                "forecast_sha256": digest(validation, forecast),
            }
        )
        for r in records:
            model_rows.setdefault(r.model_id, _model_row(r, run_id, now))
            for e, t, v in r.history:
                history_rows.setdefault(
                    (r.model_id, int(e)),
                    {"model_id": r.model_id, "epoch": int(e), "train_loss": float(t), "val_loss": v},
                )
        champions[sid] = forecast.champion
        for kind, candidate in validation.candidates.items():
            metric = MetricRow(
                series_id=sid,
                model_kind=kind,
                holdout_start=validation.holdout_start,
                holdout_end=validation.holdout_end,
                scores=candidate.scores,
                is_champion=kind == forecast.champion,
                model_id=None if candidate.model is None else candidate.model.model_id,
            )
            metrics_out.append(metric)
            if not stands:
                metric_rows.append(_metric_row(metric, run_id))
        for row in forecast.rows:
            if row.is_champion:
                forecasts_out.append(row)
            if stands:
                continue
            forecast_rows.append(
                {
                    "run_id": run_id,
                    **row.__dict__,
                    "origin": date.fromisoformat(row.origin),
                    "period": date.fromisoformat(row.period),
                    **{k: _finite(getattr(row, k)) for k in _OPTIONAL_FLOATS},
                }
            )
    status_rows += [_status(run_id, s, "skipped", snap) for s in snap.skipped]
    status_rows += [_status(run_id, s, "failed", snap) for s in not_published]
    skipped = (*snap.skipped, *not_published)
    rows = RunRows(
        run_id=run_id,
        new_observations=ingested.new_observations,
        series_trained=len(trained),
        series_reused=len(reused),
        series_skipped=len(skipped),
        model_runs=list(model_rows.values()),
        training_history=list(history_rows.values()),
        metrics=metric_rows,
        forecasts=forecast_rows,
        series_status=status_rows,
    )
    outcome = RunOutcome(
        run_id=run_id,
        new_observations=ingested.new_observations,
        revised_observations=ingested.revised_observations,
        batches=ingested.batches,
        trained=tuple(trained),
        reused=tuple(reused),
        skipped=skipped,
        champions=champions,
        metrics=tuple(metrics_out),
        forecasts=tuple(forecasts_out),
        database=database,
        data_dir=data_dir,
        degraded={sid: why for sid, why in snap.degraded.items() if sid in champions},
        unchanged=same,
    )
    return rows, outcome


def _status(run_id: str, skip: Skip, status: str, snap: Snapshot) -> dict[str, Any]:
    return {"run_id": run_id, "series_id": skip.series_id, "status": status, "reason": skip.reason,
            "degraded": skip.series_id in snap.degraded, "forecast_run_id": None, "forecast_sha256": None}  # fmt: skip


def _model_row(r: ModelRecord, run_id: str, now: datetime) -> dict[str, Any]:
    return {
        "model_id": r.model_id,
        "series_id": r.series_id,
        "model_kind": r.model_kind,
        "purpose": r.purpose,
        "config_hash": r.config_hash,
        "data_hash": r.data_hash,
        "trained_at": now,
        "train_seconds": r.train_seconds,
        "epochs": r.epochs,
        "artifact_path": r.artifact_path,
        "artifact_sha256": r.artifact_sha256 or None,
        "run_id": run_id,
    }


def _metric_row(m: MetricRow, run_id: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "series_id": m.series_id,
        "model_kind": m.model_kind,
        "holdout_start": date.fromisoformat(m.holdout_start),
        "holdout_end": date.fromisoformat(m.holdout_end),
        **{k: _finite(getattr(m.scores, k)) for k in ("mae", "rmse", "mape", "smape", "mase")},
        "is_champion": m.is_champion,
        "model_id": m.model_id,
    }
