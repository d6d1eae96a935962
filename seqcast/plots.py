"""PNG charts per series and run: loss curves, and history with holdout prediction and forecast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
import pandas as pd

from seqcast._files import atomic_write


def _figure(width: float, height: float, bottom: float) -> tuple[Any, Any]:
    """A figure with one axes in fixed margins (inches; `bottom` leaves room for tick labels and an x label).

    Fixed margins instead of a layout engine: its measuring of every text was a third of a chart's time, and a
    run's report draws dozens of charts.
    """
    left, right, top = 0.85, 0.2, 0.45
    fig, ax = plt.subplots(figsize=(width, height))
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height)
    return fig, ax


def _title(ax: Any, title: str) -> None:
    # Series ids are text, never TeX: `a$$b` would otherwise be parsed as math (and fail).
    ax.set_title(title, parse_math=False)


def _save(fig: Any, path: Path) -> Path:
    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=110)

    try:
        return atomic_write(path, write)
    finally:
        plt.close(fig)


def plot_loss(histories: dict[str, list[list[float | None]]], path: Path, title: str) -> Path:
    """Training and validation loss per epoch, one pair of lines per model kind."""
    fig, ax = _figure(7, 3.6, bottom=0.6)
    for kind, history in histories.items():
        epochs = [float(row[0] or 0) for row in history]
        ax.plot(epochs, [float(row[1] or 0) for row in history], label=f"{kind} train")
        if any(row[2] is not None for row in history):
            val = [float("nan") if row[2] is None else float(row[2]) for row in history]
            ax.plot(epochs, val, linestyle="--", label=f"{kind} validation")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE (scaled)")
    _title(ax, title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_forecast(
    history: pd.DataFrame,
    holdout: dict[str, Any],
    forecast: pd.DataFrame,
    path: Path,
    title: str,
) -> Path:
    """Actuals, each model's holdout prediction, and the champion's forecast with its interval band.

    Args:
        history: columns period, value.
        holdout: {"periods": [...], "predictions": {kind: [...]}}.
        forecast: the champion's rows (period, yhat, yhat_lower, yhat_upper, model_kind).
    """
    fig, ax = _figure(9, 4, bottom=0.4)
    ax.plot(history["period"], history["value"], color="black", linewidth=1.2, label="actual")
    periods = pd.to_datetime(pd.Series(holdout["periods"]))
    for kind, prediction in holdout["predictions"].items():
        ax.plot(periods, prediction, linestyle="--", linewidth=1, label=f"{kind} (holdout)")
    if len(forecast):
        fperiods = pd.to_datetime(forecast["period"])
        kind = forecast["model_kind"].iloc[0]
        ax.plot(fperiods, forecast["yhat"], color="tab:red", linewidth=1.6, label=f"forecast ({kind})")
        level = forecast["interval_level"].iloc[0] if "interval_level" in forecast else None
        band = f"{level:.0%} interval" if level else "interval"
        ax.fill_between(
            fperiods, forecast["yhat_lower"], forecast["yhat_upper"], color="tab:red", alpha=0.15, label=band
        )
    ax.axvline(periods.iloc[0], color="grey", linewidth=0.8, linestyle=":")
    _title(ax, title)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return _save(fig, path)
