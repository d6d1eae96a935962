"""Forecast accuracy metrics and the seasonal-naive baseline."""

from __future__ import annotations

import numpy as np

from seqcast.records import Scores

SEASON = 12


def seasonal_naive(train: np.ndarray, h: int, season: int = SEASON) -> np.ndarray:
    """Repeat the last observed season; with less than a season of history, the last value."""
    y = np.asarray(train, dtype=np.float64)
    if len(y) < season:
        return np.full(h, y[-1])
    last = y[-season:]
    return np.array([last[i % season] for i in range(h)])


@np.errstate(all="ignore")  # values at the edge of floating point give inf or NaN scores, not warnings
def mase_scale(train: np.ndarray, season: int = SEASON) -> float:
    """In-sample mean absolute seasonal-naive (lag-`season`) error; lag 1 for shorter series."""
    y = np.asarray(train, dtype=np.float64)
    lag = season if len(y) > season else 1
    if len(y) <= lag:
        return float("nan")
    scale = float(np.mean(np.abs(y[lag:] - y[:-lag])))
    return scale if scale > 0 else float("nan")


@np.errstate(all="ignore")
def score(actual: np.ndarray, predicted: np.ndarray, train: np.ndarray) -> Scores:
    """MAE, RMSE, MAPE (%), sMAPE (%) and MASE of one forecast against the actuals.

    MAPE skips zero actuals (NaN if all are zero); MASE is NaN when the training part has no
    seasonal variation to scale by.
    """
    y = np.asarray(actual, dtype=np.float64)
    f = np.asarray(predicted, dtype=np.float64)
    err = y - f
    mae = float(np.mean(np.abs(err)))
    nonzero = y != 0
    mape = float(np.mean(np.abs(err[nonzero] / y[nonzero])) * 100) if nonzero.any() else float("nan")
    denom = np.abs(y) + np.abs(f)
    smape_terms = np.where(denom > 0, 2 * np.abs(err) / np.where(denom > 0, denom, 1), 0.0)
    scale = mase_scale(train)
    return Scores(
        mae=mae,
        rmse=float(np.sqrt(np.mean(err**2))),
        mape=mape,
        smape=float(np.mean(smape_terms) * 100),
        mase=mae / scale if np.isfinite(scale) else float("nan"),
    )


def selection_score(scores: Scores) -> float:
    """What champions are chosen by: MASE, falling back to MAE where MASE is undefined."""
    return float(scores.mase) if np.isfinite(scores.mase) else float(scores.mae)
