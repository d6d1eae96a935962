"""Per-series work: holdout validation, the final refit, and the published forecast with intervals.

Every function takes and returns small JSON-able records (series refs, model records, rows), so
an orchestrator can cache and pass them; models live on disk, content-addressed.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqcast import artifacts, workers
from seqcast.config import ModelConfig
from seqcast.evaluate import score, seasonal_naive, selection_score
from seqcast.global_model import PREFIX, GlobalForecaster, global_kind
from seqcast.lake import read_series
from seqcast.models import RecurrentForecaster

log = logging.getLogger(__name__)

BASELINE = "seasonal_naive"
#: `model_runs.series_id` of a global model (it belongs to no one series; its kind is `global_<kind>`).
GLOBAL_SERIES_ID = "*"


def min_history(configs: list[ModelConfig], holdout: int) -> int:
    """Observations a series needs so that every model can be validated on the holdout."""
    return holdout + max(RecurrentForecaster(c).min_length() for c in configs)


def ineligible_reason(ref: dict[str, Any], configs: list[ModelConfig], holdout: int) -> str | None:
    """Why a series cannot be trained this run, or None."""
    if ref["missing_months"] > 0:
        return (
            f"{ref['missing_months']} missing month(s) between {ref['first_period']} and "
            f"{ref['last_period']}; send them, or run with fill_gaps to interpolate"
        )
    needed = min_history(configs, holdout)
    if ref["n_obs"] < needed:
        return f"too short: {ref['n_obs']} months, {needed} needed for lookback and a {holdout}-month holdout"
    return None


def fit_or_reuse(
    values: np.ndarray, config: ModelConfig, data_key: str, purpose: str, models_dir: Path
) -> tuple[RecurrentForecaster, dict[str, Any]]:
    """Load the stored model for exactly this data and config, or train and store it.

    Returns the model and its record (model_id, artifact_path, epochs, train_seconds, history, trained).
    """
    return fit_or_reuse_many([(values, data_key)], config, purpose, models_dir, batched=False)[0]


def fit_or_reuse_many(
    items: list[tuple[np.ndarray, str]], config: ModelConfig, purpose: str, models_dir: Path, batched: bool = True
) -> list[tuple[RecurrentForecaster, dict[str, Any]]]:
    """`fit_or_reuse` for many series (values, data key): the ones without a stored model are trained
    together as one batched computation (`RecurrentForecaster.fit_many`), or one by one."""
    ids = [artifacts.model_id(config, key, purpose) for _, key in items]
    paths = [artifacts.artifact_path(models_dir, mid) for mid in ids]
    models: list[RecurrentForecaster | None] = [artifacts.try_load(path) for path in paths]
    missing = [i for i, model in enumerate(models) if model is None]
    # Loss curves are drawn for the published (final) models only.
    curve = purpose == "final"
    fitted = workers.fit_many(config, [items[i][0] for i in missing], curve, batched) if missing else []
    for i, new in zip(missing, fitted, strict=True):
        artifacts.save_model(new, paths[i], {"data_key": items[i][1], "purpose": purpose})
        models[i] = new
    out = []
    for i, model in enumerate(models):
        assert model is not None
        record = {
            "model_id": ids[i],
            "model_kind": config.kind,
            "purpose": purpose,
            "config_hash": config.config_hash(),
            "data_hash": items[i][1],
            "artifact_path": str(paths[i]),
            "epochs": model.epochs_,
            "train_seconds": model.train_seconds_,
            "history": [list(row) for row in model.history_],
            "trained": i in missing,
        }
        out.append((model, record))
    return out


def log_lines(lines: list[str]) -> None:
    """Log a chunk's per-series lines as one record: a run over thousands of series would otherwise send
    thousands of records to the orchestrator's log."""
    if lines:
        log.info("%s", "\n".join(lines))


def _holdout_dates(periods: pd.Series, holdout: int) -> tuple[str, str]:
    return str(periods.iloc[-holdout].date()), str(periods.iloc[-1].date())


def validate_series(ref: dict[str, Any], configs: list[ModelConfig], holdout: int, models_dir: Path) -> dict[str, Any]:
    """Fit each model on all but the last `holdout` months and score its forecast of them (no peeking).

    The seasonal-naive baseline is scored on the same window.
    """
    return validate_many([ref], configs, holdout, models_dir, batched=False)[0]


def validate_many(
    refs: list[dict[str, Any]], configs: list[ModelConfig], holdout: int, models_dir: Path, batched: bool = True
) -> list[dict[str, Any]]:
    """`validate_series` for a chunk of series; with `batched`, each kind's networks train as one computation."""
    frames = [read_series(ref) for ref in refs]
    ys = [frame["value"].to_numpy(dtype=np.float64) for frame in frames]
    fits = {
        config.kind: fit_or_reuse_many(
            [(y[:-holdout], f"{ref['data_hash']}:holdout{holdout}") for ref, y in zip(refs, ys, strict=True)],
            config,
            "holdout",
            models_dir,
            batched,
        )
        for config in configs
    }
    results, lines = [], []
    for i, (ref, frame, y) in enumerate(zip(refs, frames, ys, strict=True)):
        train, actual = y[:-holdout], y[-holdout:]
        start, end = _holdout_dates(frame["period"], holdout)
        naive = seasonal_naive(train, holdout)
        candidates: dict[str, Any] = {
            BASELINE: {"metrics": score(actual, naive, train), "prediction": naive.tolist(), "model": None}
        }
        for kind, fitted in fits.items():
            model, record = fitted[i]
            prediction = model.predict(holdout)
            candidates[kind] = {
                "metrics": score(actual, prediction, train),
                "prediction": prediction.tolist(),
                "model": record,
            }
        lines.append(
            f"series {ref['series_id']}: holdout {start[:7]}..{end[:7]} MAPE "
            + ", ".join(f"{kind} {c['metrics']['mape']:.1f}%" for kind, c in candidates.items())
        )
        results.append(
            {
                "series_id": ref["series_id"],
                "holdout_start": start,
                "holdout_end": end,
                "actual": actual.tolist(),
                "candidates": candidates,
            }
        )
    log_lines(lines)
    return results


def train_series(ref: dict[str, Any], configs: list[ModelConfig], models_dir: Path) -> dict[str, Any]:
    """Refit every model kind on all of the series (or reuse the stored fit of the same data)."""
    return train_many_series([ref], configs, models_dir, batched=False)[0]


def train_many_series(
    refs: list[dict[str, Any]],
    configs: list[ModelConfig],
    models_dir: Path,
    batched: bool = True,
    horizon: int | None = None,
) -> list[dict[str, Any]]:
    """`train_series` for a chunk of series; with `batched`, each kind's networks train as one computation.

    With `horizon`, each record also carries the model's forecast (so publishing needs no reload).
    """
    items = [(read_series(ref)["value"].to_numpy(dtype=np.float64), ref["data_hash"]) for ref in refs]
    fits = {config.kind: fit_or_reuse_many(items, config, "final", models_dir, batched) for config in configs}
    results, lines = [], []
    for i, ref in enumerate(refs):
        models = {kind: fitted[i][1] for kind, fitted in fits.items()}
        if horizon is not None:
            models = {
                kind: {**record, "forecast": fits[kind][i][0].predict(horizon).tolist()}
                for kind, record in models.items()
            }
        lines.append(
            f"series {ref['series_id']}: "
            + ", ".join(
                f"{kind} {'trained' if r['trained'] else 'reused'} ({r['epochs']} epochs, {r['train_seconds']:.2f}s)"
                for kind, r in models.items()
            )
        )
        results.append({"series_id": ref["series_id"], "models": models})
    log_lines(lines)
    return results


def global_candidates(
    refs: list[dict[str, Any]],
    config: ModelConfig,
    holdout: int,
    horizon: int,
    models_dir: Path,
    steps: int,
    batch_size: int = 256,
) -> dict[str, Any]:
    """The global model as a candidate of every series: one network fitted on all series' training parts
    (scored on each series' holdout, like every candidate), and one on all the data (the forecasts).

    Both are stored content-addressed on every series' data hash, so unchanged data reuses them.
    Returns {"kind", "models": {"holdout": record, "final": record}, "series": {id: {metrics, prediction,
    forecast}}}; series too short for the network's lookback are left out (the others still compete).
    """
    kind = global_kind(config.kind)
    ys = [read_series(ref)["value"].to_numpy(dtype=np.float64) for ref in refs]
    digest = hashlib.sha256(
        "\x1f".join(f"{r['series_id']}={r['data_hash']}" for r in sorted(refs, key=lambda r: r["series_id"])).encode()
    ).hexdigest()
    key = f"global-{steps}x{batch_size}:{digest}"

    def fit(parts: list[np.ndarray], data_key: str, purpose: str) -> tuple[GlobalForecaster, dict[str, Any]]:
        mid = PREFIX + artifacts.model_id(config, data_key, purpose)
        path = artifacts.artifact_path(models_dir, mid)
        model = artifacts.try_load_global(path)
        trained = model is None
        if model is None:
            model = workers.fit_global(config, steps, batch_size, parts)
            artifacts.save_model(model, path, {"data_key": data_key, "purpose": purpose})
        record = {
            "model_id": mid,
            "series_id": GLOBAL_SERIES_ID,
            "model_kind": kind,
            "purpose": purpose,
            "config_hash": config.config_hash(),
            "data_hash": data_key,
            "artifact_path": str(path),
            "epochs": steps,
            "train_seconds": model.train_seconds_,
            "history": [list(row) for row in model.history_],
            "trained": trained,
        }
        log.info("global %s (%s): %s on %d series", kind, purpose, "trained" if trained else "reused", len(parts))
        return model, record

    held, held_record = fit([y[:-holdout] for y in ys], f"{key}:holdout{holdout}", "holdout")
    final, final_record = fit(ys, key, "final")
    series: dict[str, Any] = {}
    for ref, y in zip(refs, ys, strict=True):
        train, actual = y[:-holdout], y[-holdout:]
        if len(train) < held.min_length():
            continue
        prediction = held.predict(train, holdout)
        series[ref["series_id"]] = {
            "metrics": score(actual, prediction, train),
            "prediction": prediction.tolist(),
            "forecast": final.predict(y, horizon).tolist(),
        }
    return {"kind": kind, "models": {"holdout": held_record, "final": final_record}, "series": series}


def add_global(
    validations: list[dict[str, Any]], finals: list[dict[str, Any]], result: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Validations and final fits with the global model added as a candidate of each series it covers."""
    if not result:
        return validations, finals
    kind, per_series = result["kind"], result["series"]
    held, final = result["models"]["holdout"], result["models"]["final"]

    def extend(records: list[dict[str, Any]], add: Callable[[dict, dict], dict]) -> list[dict[str, Any]]:
        return [
            r if "error" in r or r["series_id"] not in per_series else add(r, per_series[r["series_id"]])
            for r in records
        ]

    return (
        extend(
            validations,
            lambda v, mine: {
                **v,
                "candidates": {
                    **v["candidates"],
                    kind: {"metrics": mine["metrics"], "prediction": mine["prediction"], "model": held},
                },
            },
        ),
        extend(finals, lambda f, mine: {**f, "models": {**f["models"], kind: {**final, "forecast": mine["forecast"]}}}),
    )


def conformal_interval(
    yhat: np.ndarray, actual: np.ndarray, predicted: np.ndarray | list[np.ndarray], level: float
) -> tuple[np.ndarray, np.ndarray]:
    """Interval around `yhat` from holdout errors, widening with the square root of the step.

    Errors are relative (log ratios) for positive series, absolute otherwise. Each error is divided by
    the square root of its step, and the split-conformal quantile of these sets the half-width.

    Args:
        predicted: the model's holdout prediction, or a list whose first entry is the model's and the
            rest the other candidates'. For a champion the latter applies: the candidate with the smallest
            holdout errors understates its own, so its quantile is moved a third of the way (geometrically)
            toward that of every candidate's errors pooled: in backtests its own errors covered 74% and the
            full pool 86% for an 80% level, this 82%.
    """
    actual = np.asarray(actual, dtype=np.float64)
    predicted = np.atleast_2d(np.asarray(predicted, dtype=np.float64))  # [candidates, steps]
    steps = np.sqrt(np.arange(1, len(actual) + 1))
    out_steps = np.sqrt(np.arange(1, len(yhat) + 1))
    relative = bool(np.all(actual > 0) and np.all(predicted > 0) and np.all(yhat > 0))
    errors = np.log(actual / predicted) if relative else actual - predicted
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


def forecast_series(
    ref: dict[str, Any],
    validation: dict[str, Any],
    final: dict[str, Any],
    horizon: int,
    level: float,
) -> dict[str, Any]:
    """Forecast `horizon` months from the last observation with every model; mark the champion.

    The champion is the candidate with the best holdout MASE, the seasonal-naive baseline included,
    so a network is published only when it beat the baseline.
    """
    frame = read_series(ref)
    y = frame["value"].to_numpy(dtype=np.float64)
    origin = frame["period"].iloc[-1]
    periods = [(origin + pd.DateOffset(months=k)).date() for k in range(1, horizon + 1)]
    candidates = validation["candidates"]
    champion = min(candidates, key=lambda kind: (selection_score(candidates[kind]["metrics"]), kind))
    rows: list[dict[str, Any]] = []
    for kind, candidate in candidates.items():
        if kind == BASELINE:
            yhat, model_id = seasonal_naive(y, horizon), None
        else:
            record = final["models"][kind]
            if "forecast" in record:  # computed when the model was fitted or loaded
                yhat = np.asarray(record["forecast"], dtype=np.float64)[:horizon]
            else:
                yhat = artifacts.load_model(Path(record["artifact_path"])).predict(horizon)
            model_id = record["model_id"]
        predictions = (
            [candidate["prediction"], *(c["prediction"] for k, c in candidates.items() if k != kind)]
            if kind == champion
            else candidate["prediction"]
        )
        lower, upper = conformal_interval(yhat, validation["actual"], predictions, level)
        rows.extend(
            {
                "series_id": ref["series_id"],
                "model_kind": kind,
                "origin": origin.date(),
                "period": period,
                "step": step,
                "yhat": float(yhat[step - 1]),
                "yhat_lower": float(lower[step - 1]),
                "yhat_upper": float(upper[step - 1]),
                "interval_level": level,
                "is_champion": kind == champion,
                "model_id": model_id,
            }
            for step, period in enumerate(periods, start=1)
        )
    return {"series_id": ref["series_id"], "champion": champion, "rows": rows}
