"""Per-series work: holdout validation, the final fit, the combination, the champion and its intervals.

Every function takes and returns records (`seqcast.records`). Fitted models live on disk, content-addressed
(`seqcast.artifacts`); what a kind is comes from the registry (`seqcast.models`).

Every series gets a forecast. A candidate is validated where the series is long enough for it to be fitted on
all but the holdout; the champion is chosen among the validated candidates (the combination, unless one is
clearly better). A series too short to hold months out, or whose part before the holdout is too short for some
kind its whole history allows, is forecast by what its whole history allows, first found of: the combination, a
network, a statistical model, seasonal naive, naive.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from seqcast import artifacts, models, workers
from seqcast.config import ModelConfig
from seqcast.evaluate import SEASON, mase_scale, score, selection_score
from seqcast.lake import read_series
from seqcast.records import (
    Calibration,
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
#: Validated series a kind needs for a quantile per horizon step; with fewer, the steps' errors are pooled (each
#: divided by the square root of its step) and the quantile grows with the square root of the step.
PER_STEP_SERIES = 50
#: Order in which a series too short to validate is given a model (the first it can have).
FALLBACK_ORDER = ("combination", "network", "statistical", "seasonal_naive", "naive")
#: How far a forecast may move from the last observation, in the history's largest monthly moves per month
#: ahead (a season's worth at least). Forecasts of every kind on M1 and the development series, at 12, 18 and 24
#: months, stay within 0.78 of such moves; AutoCES on 12 months of a series went 23.6 of them away (to 350
#: times the series' largest value), and the combination with it 7.9.
PLAUSIBLE_MOVES = 2.0


def candidate_configs(configs: Sequence[ModelConfig]) -> list[ModelConfig]:
    """The configured per-series kinds with every baseline before them: what each series is fitted with."""
    base = configs[0] if configs else ModelConfig()
    baselines = [base.model_copy(update={"kind": name}) for name in models.baseline_kinds()]
    return [*baselines, *(c for c in configs if c.kind not in models.baseline_kinds())]


def min_length(config: ModelConfig) -> int:
    return models.kind(config.kind).forecaster()(config).min_length()


def ineligible_reason(ref: SeriesRef) -> str | None:
    """Why a series cannot be modelled this run (months missing inside it), or None."""
    if ref.missing_months > 0:
        return (
            f"{ref.missing_months} missing month(s) between {ref.first_period} and "
            f"{ref.last_period}; send them, or run with fill_gaps to interpolate"
        )
    return None


def spread(y: np.ndarray) -> tuple[float, bool]:
    """How much a series moves from one month to the next: the mean absolute change of its logs where every
    value is positive (relative, unit-free), else of its values. NaN when undefined (one value, or no
    movement). Returns (spread, positive).

    Interval half-widths are calibrated multiples of it; month-to-month change measured better-calibrated
    intervals than the change from one season to the next (M1 and the development series, 80% and 95%)."""
    y = np.asarray(y, dtype=np.float64)
    positive = bool(np.all(y > 0))
    if len(y) < 2:
        return float("nan"), positive
    with np.errstate(all="ignore"):  # values at the edge of floating point: an infinite spread, caught below
        z = np.log(y) if positive else y
        value = float(np.mean(np.abs(np.diff(z))))
    if not np.isfinite(value):
        return float("nan"), positive
    return (value if value > 0 else float("nan")), positive


@np.errstate(all="ignore")
def plausible(y: np.ndarray, forecast: Sequence[float]) -> bool:
    """Whether a forecast stays within reach of its history: finite, and no month further from the last
    observation than `PLAUSIBLE_MOVES` times the history's largest monthly move per month ahead (at least
    twelve). A history that never moves gives no measure: any finite forecast passes."""
    y, f = np.asarray(y, dtype=np.float64), np.asarray(forecast, dtype=np.float64)
    if not np.all(np.isfinite(f)):
        return False
    move = float(np.max(np.abs(np.diff(y)))) if len(y) > 1 else 0.0
    if not (np.isfinite(move) and move > 0):
        return True
    steps = np.maximum(np.arange(1, len(f) + 1), SEASON)
    return bool(np.all(np.abs(f - y[-1]) <= PLAUSIBLE_MOVES * move * steps))


def _history(rows: Any) -> History:
    return tuple((int(e), float(t), None if v is None else float(v)) for e, t, v in rows)


def _values(array: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in np.asarray(array, dtype=np.float64))


def fit_or_reuse_many(
    items: Sequence[tuple[np.ndarray, str]],
    config: ModelConfig,
    purpose: str,
    models_dir: Path,
    batched: bool = True,
) -> list[tuple[Any, ModelRecord | None]]:
    """A fitted model per series (values, data key): the stored one for exactly this data and config, or a
    new fit, stored. Series without a sound stored model are fitted together (`Forecaster.fit_many`).

    Returns (model, record) pairs; a kind that is not stored (a baseline) has no record.
    """
    spec = models.kind(config.kind)
    cls = spec.forecaster()
    if not spec.stored:
        return [(m, None) for m in cls.fit_many(config, [y for y, _ in items], False, batched)]
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
            spec=str(getattr(model, "spec_", "")),
        )
        out.append((model, record))
    return out


def _fit_where_long_enough(
    ys: Sequence[np.ndarray],
    keys: Sequence[str],
    config: ModelConfig,
    purpose: str,
    models_dir: Path,
    batched: bool,
) -> list[tuple[Any, ModelRecord | None] | None]:
    """`fit_or_reuse_many` for the series long enough for the kind; None for the others."""
    needed = min_length(config)
    index = [i for i, y in enumerate(ys) if len(y) >= needed]
    out: list[tuple[Any, ModelRecord | None] | None] = [None] * len(ys)
    if not index:
        return out
    fitted = fit_or_reuse_many([(ys[i], keys[i]) for i in index], config, purpose, models_dir, batched)
    for i, pair in zip(index, fitted, strict=True):
        out[i] = pair
    return out


_WILD = "it moves away from the last month far faster than the series ever moved"


def log_lines(lines: list[str]) -> None:
    """Log a chunk's per-series lines as one record: a run over thousands of series would otherwise send
    thousands of records to the orchestrator's log."""
    if lines:
        log.info("%s", "\n".join(lines))


def _with_series(record: ModelRecord | None, series_id: str) -> ModelRecord | None:
    return None if record is None else dataclasses.replace(record, series_id=series_id)


def validate_many(
    refs: Sequence[SeriesRef], configs: Sequence[ModelConfig], holdout: int, models_dir: Path, batched: bool = True
) -> list[Validation]:
    """Fit each kind (baselines included) on all but the last `holdout` months of each series long enough for
    it, and score its forecast of them (no peeking). A series with no month to spare gets no candidates."""
    frames = [read_series(ref) for ref in refs]
    ys = [frame["value"].to_numpy(dtype=np.float64) for frame in frames]
    trains = [y[:-holdout] if len(y) > holdout else y[:0] for y in ys]
    keys = [f"{ref.model_key}:holdout{holdout}" for ref in refs]
    fits = {c.kind: _fit_where_long_enough(trains, keys, c, "holdout", models_dir, batched)
            for c in candidate_configs(configs)}  # fmt: skip
    results, lines = [], []
    for i, (ref, frame, y) in enumerate(zip(refs, frames, ys, strict=True)):
        train, actual = trains[i], y[len(trains[i]) :]
        if len(train) == 0:
            results.append(Validation(ref.series_id, "", "", (), {}))
            lines.append(f"series {ref.series_id}: {len(y)} months, too short to hold {holdout} out")
            continue
        start, end = str(frame["period"].iloc[-holdout].date()), str(frame["period"].iloc[-1].date())
        candidates = {}
        for kind, fitted in fits.items():
            pair = fitted[i]
            if pair is None:
                continue
            model, record = pair
            prediction = model.predict(holdout)
            candidates[kind] = Candidate(
                kind, score(actual, prediction, train), _values(prediction), _with_series(record, ref.series_id)
            )
        lines.append(
            f"series {ref.series_id}: holdout {start[:7]}..{end[:7]} MAPE "
            + ", ".join(f"{kind} {c.scores.mape:.1f}%" for kind, c in candidates.items())
        )
        results.append(
            Validation(ref.series_id, start, end, _values(actual), candidates, spread(train)[0], mase_scale(train))
        )
    log_lines(lines)
    return results


def train_many(
    refs: Sequence[SeriesRef],
    configs: Sequence[ModelConfig],
    models_dir: Path,
    horizon: int,
    batched: bool = True,
) -> list[Fit]:
    """Refit every kind on all of each series long enough for it (or reuse the stored fit of the same data),
    and forecast `horizon` months. A statistical kind chooses its form anew on all the data: reusing the form
    chosen on the shorter holdout data measured worse (M1: ETS 1.152 against 1.090 mean MASE)."""
    ys = [read_series(ref)["value"].to_numpy(dtype=np.float64) for ref in refs]
    keys = [ref.model_key for ref in refs]
    fits = {
        c.kind: _fit_where_long_enough(ys, keys, c, "final", models_dir, batched) for c in candidate_configs(configs)
    }
    results, lines = [], []
    for i, ref in enumerate(refs):
        pairs = {kind: f[i] for kind, f in fits.items() if f[i] is not None}
        records = {kind: _with_series(p[1], ref.series_id) for kind, p in pairs.items() if p is not None}
        stored = {kind: r for kind, r in records.items() if r is not None}
        forecasts = {kind: _values(p[0].predict(horizon)) for kind, p in pairs.items() if p is not None}
        wild = [kind for kind, forecast in forecasts.items() if not plausible(ys[i], forecast)]
        lines.append(
            f"series {ref.series_id}: "
            + ", ".join(
                f"{kind} {'trained' if r.trained else 'reused'} ({r.epochs} epochs, {r.train_seconds:.2f}s)"
                for kind, r in stored.items()
            )
            + "".join(f"; {kind}'s forecast left out: {_WILD}" for kind in wild)
        )
        forecasts = {kind: forecast for kind, forecast in forecasts.items() if kind not in wild}
        value, positive = spread(ys[i])
        results.append(Fit(ref.series_id, stored, forecasts, value, positive))
    log_lines(lines)
    return results


# ------------------------------------------------------------------------------------------ global networks


def _global_data_key(refs: Sequence[SeriesRef], steps: int, batch_size: int) -> str:
    digest = hashlib.sha256(
        "\x1f".join(f"{r.series_id}={r.data_hash}" for r in sorted(refs, key=lambda r: r.series_id)).encode()
    ).hexdigest()
    return f"global-{steps}x{batch_size}:{digest}"


def _global_model_id(config: ModelConfig, data_key: str, purpose: str) -> str:
    return models.GLOBAL_PREFIX + artifacts.model_id(config, data_key, purpose)


def global_candidates(
    refs: Sequence[SeriesRef],
    configs: Sequence[ModelConfig],
    holdout: int,
    horizon: int,
    models_dir: Path,
    steps: int,
    batch_size: int = 256,
) -> list[GlobalResult]:
    """Each global network as a candidate of every series: one network fitted on all series' training parts
    (scored on each series' holdout, like every candidate), and one on all the data (the forecasts).

    All are stored content-addressed on every series' data hash, so unchanged data reuses them; the ensembles'
    members train at once in the training processes. A series too short for the network's input gets no
    forecast from it; one too short to validate it gets a forecast but no holdout score.
    """
    ys = [read_series(ref)["value"].to_numpy(dtype=np.float64) for ref in refs]
    trains = [y[:-holdout] if len(y) > holdout else y[:0] for y in ys]
    key = _global_data_key(refs, steps, batch_size)
    jobs: list[tuple[ModelConfig, str, str, list[np.ndarray], Path]] = []
    for config in configs:
        for data_key, purpose, parts in ((f"{key}:holdout{holdout}", "holdout", trains), (key, "final", ys)):
            path = artifacts.artifact_path(models_dir, _global_model_id(config, data_key, purpose))
            jobs.append((config, data_key, purpose, parts, path))
    loaded: list[Any] = [artifacts.try_load(path, models.global_kind(c.kind)) for c, _, _, _, path in jobs]
    todo = [i for i, model in enumerate(loaded) if model is None]
    fitted = workers.fit_globals([(jobs[i][0], steps, batch_size, jobs[i][3]) for i in todo])
    for i, model in zip(todo, fitted, strict=True):
        loaded[i] = model
    results = []
    for c_index, config in enumerate(configs):
        kind = models.global_kind(config.kind)
        pair = []
        for i in (2 * c_index, 2 * c_index + 1):
            model = loaded[i]
            _, data_key, purpose, parts, path = jobs[i]
            sha = artifacts.recorded_sha256(path) or ""
            if i in todo:
                sha = artifacts.save_model(model, path, {"data_key": data_key, "purpose": purpose})
            record = ModelRecord(
                model_id=_global_model_id(config, data_key, purpose),
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
                trained=i in todo,
            )
            log.info("%s (%s): %s on %d series", kind, purpose, "trained" if i in todo else "reused", len(parts))
            pair.append((model, record))
        (held, held_record), (final, final_record) = pair
        validated = [j for j, t in enumerate(trains) if len(t) >= held.min_length()]
        forecastable = [j for j, y in enumerate(ys) if len(y) >= final.min_length()]
        candidates = {}
        if validated:
            predictions = held.predict_many([trains[j] for j in validated], holdout)
            for j, prediction in zip(validated, predictions, strict=True):
                actual = ys[j][len(trains[j]) :]
                candidates[refs[j].series_id] = Candidate(
                    kind, score(actual, prediction, trains[j]), _values(prediction), held_record
                )
        forecasts = {}
        if forecastable:
            for j, forecast in zip(forecastable, final.predict_many([ys[j] for j in forecastable], horizon),
                                   strict=True):  # fmt: skip
                if plausible(ys[j], forecast):
                    forecasts[refs[j].series_id] = _values(forecast)
                else:
                    log.info("series %s: %s's forecast left out: %s", refs[j].series_id, kind, _WILD)
        results.append(GlobalResult(kind, held_record, final_record, candidates, forecasts, int(final.n_series_)))
    return results


def add_global(validations: list[Any], fits: list[Any], results: Sequence[GlobalResult]) -> tuple[list[Any], list[Any]]:
    """Validations and fits with each global network added: a candidate of each series it validated, a
    forecast of each series it can forecast. Failures are passed on as they are."""
    for result in results:
        kind = result.kind

        def validation(v: Any, result: GlobalResult = result, kind: str = kind) -> Any:
            if not isinstance(v, Validation) or v.series_id not in result.candidates:
                return v
            return dataclasses.replace(v, candidates={**v.candidates, kind: result.candidates[v.series_id]})

        def fit(f: Any, result: GlobalResult = result, kind: str = kind) -> Any:
            if not isinstance(f, Fit) or f.series_id not in result.forecasts:
                return f
            return dataclasses.replace(
                f,
                models={**f.models, kind: result.final},
                forecasts={**f.forecasts, kind: result.forecasts[f.series_id]},
            )

        validations, fits = [validation(v) for v in validations], [fit(f) for f in fits]
    return validations, fits


# ------------------------------------------------------------------------------------------- combination


def members_of(kinds: Sequence[str]) -> list[str]:
    """Of a run's candidate kinds, the ones the combination averages: networks and statistical models."""
    out = []
    for name in kinds:
        k = models.kind(name)
        if k.recurrent or k.is_global or k.statistical or k.hidden:
            out.append(name)
    return out


def add_combination(validations: list[Any], fits: list[Any], members: Sequence[str]) -> tuple[list[Any], list[Any]]:
    """Add the combination: the mean of the members' forecasts, where a series has two or more of them.

    The members are those that could forecast the series. Where they were all validated, that is the same set
    as the holdout's, so the combination's holdout score and its forecast come from the same models; where some
    were not (the part before the holdout too short for them), the series is published without a holdout score
    (`forecast_series`), and the combination of all of them is what it can have.
    """
    name = models.COMBINATION
    by_fit = {f.series_id: f for f in fits if isinstance(f, Fit)}
    new_vals, new_fits = [], []
    for v in validations:
        if isinstance(v, Validation) and v.series_id in by_fit:
            fit = by_fit[v.series_id]
            present = [m for m in members if m in v.candidates and m in fit.forecasts]
            if len(present) >= 2:
                prediction = np.mean([v.candidates[m].prediction for m in present], axis=0)
                actual = np.asarray(v.actual)
                scores = _scores_with_scale(actual, prediction, v.scale)
                v = dataclasses.replace(
                    v, candidates={**v.candidates, name: Candidate(name, scores, _values(prediction), None)}
                )
        new_vals.append(v)
    for f in fits:
        if isinstance(f, Fit):
            present = [m for m in members if m in f.forecasts]
            if len(present) >= 2:
                forecast = np.mean([f.forecasts[m] for m in present], axis=0)
                f = dataclasses.replace(f, forecasts={**f.forecasts, name: _values(forecast)})
        new_fits.append(f)
    return new_vals, new_fits


def _scores_with_scale(actual: np.ndarray, predicted: np.ndarray, scale: float) -> Any:
    """`score` when only the training part's MASE scale is at hand (not the training part itself)."""
    base = score(actual, predicted, np.array([0.0, 1.0]))  # scale 1 (lag 1 on two points)
    return dataclasses.replace(base, mase=base.mae / scale if np.isfinite(scale) and scale > 0 else float("nan"))


# ------------------------------------------------------------------------------------------ champion


def champion_of(candidates: dict[str, Candidate], margin: float = 0.0) -> tuple[str, str]:
    """The champion among validated candidates, and why.

    The combination wins unless a single candidate's holdout score is below (1 - margin) times the
    combination's; without a combination, the best holdout score wins (MASE, or MAE where MASE is undefined;
    an undefined score ranks last; ties go to the first name in alphabetical order).
    """

    def rank(kind: str) -> tuple[float, str]:
        value = selection_score(candidates[kind].scores)
        return (value if np.isfinite(value) else np.inf), kind

    best = min(candidates, key=rank)
    combination = models.COMBINATION
    if combination in candidates and best != combination:
        threshold = (1 - margin) * rank(combination)[0]
        if not rank(best)[0] < threshold:
            best = combination
    score_text = (
        f"holdout MASE {candidates[best].scores.mase:.3f}"
        if np.isfinite(candidates[best].scores.mase)
        else "best holdout MAE"
    )
    if best == combination:
        return best, f"combination, {score_text}"
    if combination in candidates:
        return best, f"{score_text}, clearly better than the combination's {candidates[combination].scores.mase:.3f}"
    return best, f"{score_text}, the best of the models this series' length allows"


def fallback_of(fit: Fit) -> tuple[str, str]:
    """The model of a series too short to validate any (the first its history allows, in FALLBACK_ORDER)."""
    available = fit.forecasts
    for family in FALLBACK_ORDER:
        for kind in available:
            k = models.kind(kind)
            if (
                (family == "combination" and k.derived)
                or (family == "network" and (k.recurrent or k.is_global))
                or (family == "statistical" and k.statistical)
                or family == kind
            ):
                return kind, "too short to hold months out for validation: published without a holdout score"
    raise ValueError("no model could forecast this series")


# ------------------------------------------------------------------------------------------ intervals


@np.errstate(all="ignore")
def normalised_errors(actual: Sequence[float], predicted: Sequence[float], spread_value: float) -> np.ndarray:
    """Holdout errors as multiples of the training part's spread: log ratios where both are positive, else
    differences (`spread` is measured the same way)."""
    a, p = np.asarray(actual, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    if np.all(a > 0) and np.all(p > 0):
        return np.asarray(np.log(a / p) / spread_value)
    return np.asarray((a - p) / spread_value)


def calibrate(validations: Sequence[Any], levels: tuple[float, float]) -> Calibration:
    """Per kind and horizon step, the `levels` quantiles of the absolute normalised holdout errors of every
    validated series (see PER_STEP_SERIES for small runs)."""
    errors: dict[str, list[np.ndarray]] = {}
    for v in validations:
        if not isinstance(v, Validation) or not np.isfinite(v.spread):
            continue
        for kind, c in v.candidates.items():
            e = np.abs(normalised_errors(v.actual, c.prediction, v.spread))
            if np.all(np.isfinite(e)):
                errors.setdefault(kind, []).append(e)
    inner, outer, counts = {}, {}, {}
    for kind, rows in errors.items():
        matrix = np.stack(rows)  # [series, steps]
        if len(rows) >= PER_STEP_SERIES:
            inner[kind] = _values(np.quantile(matrix, levels[0], axis=0))
            outer[kind] = _values(np.quantile(matrix, levels[1], axis=0))
        else:
            growth = np.sqrt(np.arange(1, matrix.shape[1] + 1))
            pooled = (matrix / growth).ravel()
            inner[kind] = _values(_conformal_quantile(pooled, levels[0]) * growth)
            outer[kind] = _values(_conformal_quantile(pooled, levels[1]) * growth)
        counts[kind] = len(rows)
    return Calibration(levels, inner, outer, counts)


def _per_step(quantiles: Sequence[float], horizon: int) -> np.ndarray:
    """Calibrated half-widths for `horizon` steps; beyond the holdout they grow with the square root of the
    step from the last calibrated one."""
    q = np.asarray(quantiles, dtype=np.float64)
    if horizon <= len(q):
        return q[:horizon]
    steps = np.arange(len(q) + 1, horizon + 1)
    grown: np.ndarray = np.r_[q, q[-1] * np.sqrt(steps / len(q))]
    return grown


@np.errstate(all="ignore")  # series at the edge of floating point get infinite bounds, not warnings
def interval(
    yhat: np.ndarray,
    kind: str,
    fit: Fit,
    validation: Validation,
    calibration: Calibration | None,
    level_index: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The interval of one level around a candidate's forecast.

    Calibrated across series where the run has enough (quantiles of normalised holdout errors, times this
    series' spread); else from this series' own holdout errors (`conformal_interval`); else, for a series
    with no holdout, a normal interval on its spread growing with the square root of the step.
    """
    h = len(yhat)
    level = (calibration.levels if calibration else (0.8, 0.95))[level_index]
    table = None if calibration is None else (calibration.inner, calibration.outer)[level_index]
    width_of = np.isfinite(fit.spread) and fit.spread > 0
    if table is not None and kind in table and width_of:
        half = _per_step(table[kind], h) * fit.spread
    elif kind in validation.candidates:
        c = validation.candidates[kind]
        return conformal_interval(yhat, validation.actual, c.prediction, level)
    else:
        base = fit.spread if width_of else float(np.mean(np.abs(yhat))) * 0.1 or 1.0
        half = NormalDist().inv_cdf((1 + level) / 2) * base * np.sqrt(np.arange(1, h + 1))
    if fit.positive and np.all(yhat > 0):
        return yhat * np.exp(-half), yhat * np.exp(half)
    return yhat - half, yhat + half


@np.errstate(all="ignore")
def conformal_interval(yhat: Any, actual: Any, predicted: Any, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Interval around `yhat` from one series' holdout errors, widening with the square root of the step.

    Errors are relative (log ratios) for positive series, absolute otherwise. Each error is divided by the
    square root of its step, and the split-conformal quantile of these sets the half-width.
    """
    yhat = np.asarray(yhat, dtype=np.float64)
    actual_a = np.asarray(actual, dtype=np.float64)
    predicted_a = np.atleast_2d(np.asarray(predicted, dtype=np.float64))  # [candidates, steps]
    steps = np.sqrt(np.arange(1, len(actual_a) + 1))
    out_steps = np.sqrt(np.arange(1, len(yhat) + 1))
    relative = bool(np.all(actual_a > 0) and np.all(predicted_a > 0) and np.all(yhat > 0))
    errors = np.log(actual_a / predicted_a) if relative else actual_a - predicted_a
    normalised = np.abs(errors) / steps
    q = _conformal_quantile(normalised.ravel(), level)
    if relative:
        return yhat * np.exp(-q * out_steps), yhat * np.exp(q * out_steps)
    return yhat - q * out_steps, yhat + q * out_steps


def _conformal_quantile(scores: np.ndarray, level: float) -> float:
    # Level (n + 1) / n * level, interpolated rather than rounded up.
    n = len(scores)
    return float(np.quantile(scores, min(1.0, level * (n + 1) / n)))


# ------------------------------------------------------------------------------------------ forecast


def forecast_series(
    ref: SeriesRef,
    validation: Validation,
    fit: Fit,
    horizon: int,
    calibration: Calibration | None,
    margin: float = 0.0,
) -> Forecast:
    """Forecast `horizon` months from the last observation with every candidate that has a forecast; mark the
    champion; give every row its two intervals."""
    origin = pd.Timestamp(ref.last_period)
    periods = [str((origin + pd.DateOffset(months=k)).date()) for k in range(1, horizon + 1)]

    def finite(kind: str) -> bool:
        return kind in fit.forecasts and bool(np.all(np.isfinite(fit.forecasts[kind][:horizon])))

    # A candidate whose holdout prediction or forecast is not finite (a series at the edge of floating point)
    # is left out; the others still compete.
    validated = {
        kind: c for kind, c in validation.candidates.items() if finite(kind) and np.all(np.isfinite(c.prediction))
    }
    # Kinds the whole history allows that the part before the holdout was too short to fit: choosing among the
    # validated ones would publish a lesser model (a 30-month series with a 24-month holdout validates naive
    # alone, yet its whole history allows the combination).
    unfitted = [k for k in fit.forecasts if finite(k) and k not in validation.candidates]
    if validated and not unfitted:
        champion, reason = champion_of(validated, margin)
        kinds = list(validated)
    else:
        usable = dataclasses.replace(fit, forecasts={k: v for k, v in fit.forecasts.items() if finite(k)})
        if not usable.forecasts:
            raise ValueError("no model gave a finite forecast")
        champion, reason = fallback_of(usable)
        if validation.candidates:
            reason = (
                f"{ref.n_obs} months: holding {len(validation.actual)} out leaves too few to fit "
                f"{', '.join(unfitted)}; published without a holdout score"
            )
        kinds = list(usable.forecasts)
    levels = calibration.levels if calibration else (0.8, 0.95)
    rows: list[ForecastRow] = []
    for kind in kinds:
        yhat = np.asarray(fit.forecasts[kind], dtype=np.float64)[:horizon]
        lower, upper = interval(yhat, kind, fit, validation, calibration, 0)
        lower_outer, upper_outer = interval(yhat, kind, fit, validation, calibration, 1)
        record = fit.models.get(kind)
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
                interval_level=levels[0],
                is_champion=kind == champion,
                model_id=None if record is None else record.model_id,
                yhat_lower_outer=float(lower_outer[step - 1]),
                yhat_upper_outer=float(upper_outer[step - 1]),
                interval_level_outer=levels[1],
            )
            for step, period in enumerate(periods, start=1)
        )
    return Forecast(ref.series_id, champion, tuple(rows), f"{champion}: {reason}")
