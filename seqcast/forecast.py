"""Per-series work: holdout validation, the final refit, and the published forecast with intervals.

Every function takes and returns records (`seqcast.records`): series refs in, validations, fits and forecasts
out. Fitted models live on disk, content-addressed (`seqcast.artifacts`); what a kind is comes from the registry
(`seqcast.models`), so this module knows no kind by name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqcast import artifacts, models, workers
from seqcast.config import ModelConfig
from seqcast.evaluate import score, selection_score
from seqcast.lake import read_series
from seqcast.records import (
    Candidate,
    Fit,
    Forecast,
    ForecastRow,
    GlobalResult,
    History,
    ModelRecord,
    SeriesRef,
    Validation,
)

log = logging.getLogger(__name__)

#: `model_runs.series_id` of a global model (it belongs to no one series).
GLOBAL_SERIES_ID = "*"


def candidate_configs(configs: Sequence[ModelConfig]) -> list[ModelConfig]:
    """The configured kinds with every baseline before them: what each series is scored with."""
    base = configs[0] if configs else ModelConfig()
    baselines = [base.model_copy(update={"kind": name}) for name in models.baseline_kinds()]
    return [*baselines, *(c for c in configs if c.kind not in models.baseline_kinds())]


def min_history(configs: Sequence[ModelConfig], holdout: int) -> int:
    """Observations a series needs so that every model can be validated on the holdout."""
    return holdout + max(models.kind(c.kind).forecaster()(c).min_length() for c in configs)


def ineligible_reason(ref: SeriesRef, configs: Sequence[ModelConfig], holdout: int) -> str | None:
    """Why a series cannot be trained this run, or None."""
    if ref.missing_months > 0:
        return (
            f"{ref.missing_months} missing month(s) between {ref.first_period} and "
            f"{ref.last_period}; send them, or run with fill_gaps to interpolate"
        )
    needed = min_history(configs, holdout)
    if ref.n_obs < needed:
        return f"too short: {ref.n_obs} months, {needed} needed for lookback and a {holdout}-month holdout"
    return None


def _history(rows: Any) -> History:
    return tuple((int(e), float(t), None if v is None else float(v)) for e, t, v in rows)


def fit_or_reuse_many(
    items: Sequence[tuple[np.ndarray, str]], config: ModelConfig, purpose: str, models_dir: Path, batched: bool = True
) -> list[tuple[Any, ModelRecord | None]]:
    """A fitted model per series (values, data key): the stored one for exactly this data and config, or a
    new fit, stored. Series without a sound stored model are fitted together (`Forecaster.fit_many`).

    Returns (model, record) pairs; a kind that is not stored (a baseline) has no record.
    """
    spec = models.kind(config.kind)
    if not spec.stored:
        return [(m, None) for m in spec.forecaster().fit_many(config, [y for y, _ in items], False, batched)]
    ids = [artifacts.model_id(config, key, purpose) for _, key in items]
    paths = [artifacts.artifact_path(models_dir, mid) for mid in ids]
    fitted: list[Any | None] = [artifacts.try_load(path, spec.name) for path in paths]
    missing = [i for i, model in enumerate(fitted) if model is None]
    # Loss curves are drawn for the published (final) models only.
    new = workers.fit_many(config, [items[i][0] for i in missing], purpose == "final", batched) if missing else []
    hashes = {}
    for i, model in zip(missing, new, strict=True):
        hashes[i] = artifacts.save_model(model, paths[i], {"data_key": items[i][1], "purpose": purpose})
        fitted[i] = model
    out: list[tuple[Any, ModelRecord | None]] = []
    for i, model in enumerate(fitted):
        assert model is not None
        record = ModelRecord(
            model_id=ids[i],
            series_id="",
            model_kind=spec.name,
            purpose=purpose,
            config_hash=config.config_hash(),
            data_hash=items[i][1],
            artifact_path=str(paths[i]),
            artifact_sha256=hashes[i] if i in hashes else (artifacts.recorded_sha256(paths[i]) or ""),
            epochs=int(model.epochs_),
            train_seconds=float(model.train_seconds_),
            history=_history(model.history_),
            trained=i in hashes,
        )
        out.append((model, record))
    return out


def log_lines(lines: list[str]) -> None:
    """Log a chunk's per-series lines as one record: a run over thousands of series would otherwise send
    thousands of records to the orchestrator's log."""
    if lines:
        log.info("%s", "\n".join(lines))


def _with_series(record: ModelRecord | None, series_id: str) -> ModelRecord | None:
    if record is None:
        return None
    return dataclasses.replace(record, series_id=series_id)


def validate_many(
    refs: Sequence[SeriesRef], configs: Sequence[ModelConfig], holdout: int, models_dir: Path, batched: bool = True
) -> list[Validation]:
    """Fit each kind (baselines included) on all but the last `holdout` months of each series and score its
    forecast of them (no peeking); with `batched`, a kind's networks train as one computation."""
    frames = [read_series(ref) for ref in refs]
    ys = [frame["value"].to_numpy(dtype=np.float64) for frame in frames]
    fits = {
        config.kind: fit_or_reuse_many(
            [(y[:-holdout], f"{ref.data_hash}:holdout{holdout}") for ref, y in zip(refs, ys, strict=True)],
            config,
            "holdout",
            models_dir,
            batched,
        )
        for config in candidate_configs(configs)
    }
    results, lines = [], []
    for i, (ref, frame, y) in enumerate(zip(refs, frames, ys, strict=True)):
        train, actual = y[:-holdout], y[-holdout:]
        start, end = str(frame["period"].iloc[-holdout].date()), str(frame["period"].iloc[-1].date())
        candidates = {}
        for kind, fitted in fits.items():
            model, record = fitted[i]
            prediction = model.predict(holdout)
            candidates[kind] = Candidate(
                kind, score(actual, prediction, train), _values(prediction), _with_series(record, ref.series_id)
            )
        lines.append(
            f"series {ref.series_id}: holdout {start[:7]}..{end[:7]} MAPE "
            + ", ".join(f"{kind} {c.scores.mape:.1f}%" for kind, c in candidates.items())
        )
        results.append(Validation(ref.series_id, start, end, _values(actual), candidates))
    log_lines(lines)
    return results


def _values(array: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in np.asarray(array, dtype=np.float64))


def train_many(
    refs: Sequence[SeriesRef], configs: Sequence[ModelConfig], models_dir: Path, horizon: int, batched: bool = True
) -> list[Fit]:
    """Refit every kind on all of each series (or reuse the stored fit of the same data) and forecast
    `horizon` months; with `batched`, a kind's networks train as one computation."""
    items = [(read_series(ref)["value"].to_numpy(dtype=np.float64), ref.data_hash) for ref in refs]
    fits = {c.kind: fit_or_reuse_many(items, c, "final", models_dir, batched) for c in candidate_configs(configs)}
    results, lines = [], []
    for i, ref in enumerate(refs):
        records = {kind: _with_series(f[i][1], ref.series_id) for kind, f in fits.items()}
        stored = {kind: r for kind, r in records.items() if r is not None}
        forecasts = {kind: _values(f[i][0].predict(horizon)) for kind, f in fits.items()}
        lines.append(
            f"series {ref.series_id}: "
            + ", ".join(
                f"{kind} {'trained' if r.trained else 'reused'} ({r.epochs} epochs, {r.train_seconds:.2f}s)"
                for kind, r in stored.items()
            )
        )
        results.append(Fit(ref.series_id, stored, forecasts))
    log_lines(lines)
    return results


def _global_data_key(refs: Sequence[SeriesRef], steps: int, batch_size: int) -> str:
    digest = hashlib.sha256(
        "\x1f".join(f"{r.series_id}={r.data_hash}" for r in sorted(refs, key=lambda r: r.series_id)).encode()
    ).hexdigest()
    return f"global-{steps}x{batch_size}:{digest}"


def _global_model_id(config: ModelConfig, data_key: str, purpose: str) -> str:
    return models.GLOBAL_PREFIX + artifacts.model_id(config, data_key, purpose)


def global_candidates(
    refs: Sequence[SeriesRef],
    config: ModelConfig,
    holdout: int,
    horizon: int,
    models_dir: Path,
    steps: int,
    batch_size: int = 256,
) -> GlobalResult:
    """The global model as a candidate of every series: one network fitted on all series' training parts
    (scored on each series' holdout, like every candidate), and one on all the data (the forecasts).

    Both are stored content-addressed on every series' data hash, so unchanged data reuses them. Series too
    short for the network's lookback are left out (the others still compete).
    """
    kind = models.global_kind(config.kind)
    ys = [read_series(ref)["value"].to_numpy(dtype=np.float64) for ref in refs]
    key = _global_data_key(refs, steps, batch_size)

    def fit(parts: list[np.ndarray], data_key: str, purpose: str) -> tuple[Any, ModelRecord]:
        mid = _global_model_id(config, data_key, purpose)
        path = artifacts.artifact_path(models_dir, mid)
        model = artifacts.try_load(path, kind)
        sha = artifacts.recorded_sha256(path) or ""
        trained = model is None
        if model is None:
            model = workers.fit_global(config, steps, batch_size, parts)
            sha = artifacts.save_model(model, path, {"data_key": data_key, "purpose": purpose})
        record = ModelRecord(
            model_id=mid,
            series_id=GLOBAL_SERIES_ID,
            model_kind=kind,
            purpose=purpose,
            config_hash=config.config_hash(),
            data_hash=data_key,
            artifact_path=str(path),
            artifact_sha256=sha,
            epochs=steps,
            train_seconds=float(model.train_seconds_),
            history=_history(model.history_),
            trained=trained,
        )
        log.info("global %s (%s): %s on %d series", kind, purpose, "trained" if trained else "reused", len(parts))
        return model, record

    held, held_record = fit([y[:-holdout] for y in ys], f"{key}:holdout{holdout}", "holdout")
    final, final_record = fit(ys, key, "final")
    candidates, forecasts = {}, {}
    for ref, y in zip(refs, ys, strict=True):
        train, actual = y[:-holdout], y[-holdout:]
        if len(train) < held.min_length():
            continue
        prediction = held.predict(train, holdout)
        candidates[ref.series_id] = Candidate(kind, score(actual, prediction, train), _values(prediction), held_record)
        forecasts[ref.series_id] = _values(final.predict(y, horizon))
    return GlobalResult(kind, held_record, final_record, candidates, forecasts)


def add_global(validations: list[Any], fits: list[Any], result: GlobalResult | None) -> tuple[list[Any], list[Any]]:
    """Validations and fits with the global model added as a candidate of each series it covers (failures and
    series it does not cover are passed on as they are)."""
    if result is None:
        return validations, fits
    kind = result.kind

    def validation(v: Any) -> Any:
        if not isinstance(v, Validation) or v.series_id not in result.candidates:
            return v
        return dataclasses.replace(v, candidates={**v.candidates, kind: result.candidates[v.series_id]})

    def fit(f: Any) -> Any:
        if not isinstance(f, Fit) or f.series_id not in result.forecasts:
            return f
        return Fit(f.series_id, {**f.models, kind: result.final}, {**f.forecasts, kind: result.forecasts[f.series_id]})

    return [validation(v) for v in validations], [fit(f) for f in fits]


def conformal_interval(yhat: Any, actual: Any, predicted: Any, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Interval around `yhat` from holdout errors, widening with the square root of the step.

    Errors are relative (log ratios) for positive series, absolute otherwise. Each error is divided by
    the square root of its step, and the split-conformal quantile of these sets the half-width.

    Args:
        predicted: the model's holdout prediction, or a list whose first entry is the model's and the
            rest the other candidates'. For a champion the latter applies: the candidate with the smallest
            holdout errors understates its own, so its quantile is moved a third of the way (geometrically)
            toward that of every candidate's errors pooled (measured: its own errors covered 74% and the
            full pool 86% for an 80% level, this 82%).
    """
    yhat = np.asarray(yhat, dtype=np.float64)
    actual_a = np.asarray(actual, dtype=np.float64)
    predicted_a = np.atleast_2d(np.asarray(predicted, dtype=np.float64))  # [candidates, steps]
    steps = np.sqrt(np.arange(1, len(actual_a) + 1))
    out_steps = np.sqrt(np.arange(1, len(yhat) + 1))
    relative = bool(np.all(actual_a > 0) and np.all(predicted_a > 0) and np.all(yhat > 0))
    errors = np.log(actual_a / predicted_a) if relative else actual_a - predicted_a
    normalised = np.abs(errors) / steps
    q = _conformal_quantile(normalised[0], level)
    if len(normalised) > 1:
        q = float(q ** (2 / 3) * _conformal_quantile(normalised.ravel(), level) ** (1 / 3))
    if relative:
        return yhat * np.exp(-q * out_steps), yhat * np.exp(q * out_steps)
    return yhat - q * out_steps, yhat + q * out_steps


def _conformal_quantile(scores: np.ndarray, level: float) -> float:
    # Level (n + 1) / n * level, interpolated rather than rounded up: with 12 errors the rounded rank
    # over-covered in backtests and the plain `level` quantile under-covered.
    n = len(scores)
    return float(np.quantile(scores, min(1.0, level * (n + 1) / n)))


def champion_of(candidates: dict[str, Candidate]) -> str:
    """The candidate with the best holdout score (baselines included, so a network is published only when it
    beat them); ties go to the first name in alphabetical order, an undefined score ranks last."""

    def rank(kind: str) -> tuple[float, str]:
        value = selection_score(candidates[kind].scores)
        return (value if np.isfinite(value) else np.inf), kind

    return min(candidates, key=rank)


def forecast_series(ref: SeriesRef, validation: Validation, fit: Fit, horizon: int, level: float) -> Forecast:
    """Forecast `horizon` months from the last observation with every candidate; mark the champion."""
    origin = pd.Timestamp(ref.last_period)
    periods = [str((origin + pd.DateOffset(months=k)).date()) for k in range(1, horizon + 1)]
    # A candidate whose holdout prediction or forecast is not finite (a series at the edge of floating point)
    # is left out; the others still compete.
    candidates = {
        kind: c
        for kind, c in validation.candidates.items()
        if np.all(np.isfinite(c.prediction)) and np.all(np.isfinite(fit.forecasts[kind][:horizon]))
    }
    if not candidates:
        raise ValueError("no model gave a finite forecast")
    champion = champion_of(candidates)
    rows: list[ForecastRow] = []
    for kind, candidate in candidates.items():
        yhat = np.asarray(fit.forecasts[kind], dtype=np.float64)[:horizon]
        record = fit.models.get(kind)
        predictions: Any = (
            [candidate.prediction, *(c.prediction for k, c in candidates.items() if k != kind)]
            if kind == champion
            else candidate.prediction
        )
        lower, upper = conformal_interval(yhat, validation.actual, predictions, level)
        rows.extend(
            ForecastRow(
                series_id=ref.series_id,
                model_kind=kind,
                origin=str(origin.date()),
                period=period,
                step=step,
                yhat=float(yhat[step - 1]),
                yhat_lower=float(lower[step - 1]),
                yhat_upper=float(upper[step - 1]),
                interval_level=level,
                is_champion=kind == champion,
                model_id=None if record is None else record.model_id,
            )
            for step, period in enumerate(periods, start=1)
        )
    return Forecast(ref.series_id, champion, tuple(rows))
