"""PNG charts per series and run: loss curves, and history with holdout prediction and forecast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
import pandas as pd

from seqcast._files import atomic_write


def _figure(width: float, height: float, bottom: float, right: float = 0.2) -> tuple[Any, Any]:
    """A figure with one axes in fixed margins (inches; `bottom` leaves room for tick labels and an x label).

    Fixed margins instead of a layout engine: its measuring of every text was a third of a chart's time, and a
    run's report draws dozens of charts.
    """
    left, top = 0.85, 0.45
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


#: Years of history a forecast chart shows before the forecast (all of it when shorter).
RECENT_YEARS = 5


def plot_forecast(
    history: pd.DataFrame,
    holdout: dict[str, Any],
    forecast: pd.DataFrame,
    path: Path,
    title: str,
    past: pd.DataFrame | None = None,
    recent_years: int = RECENT_YEARS,
) -> Path:
    """The recent years of actuals, the holdout predictions, past published forecasts against what happened, and
    the champion's forecast with both interval bands.

    Args:
        history: columns period, value.
        holdout: {"periods": [...], "predictions": {kind: [...]}} (the champion's and seasonal naive's, say).
        forecast: the champion's rows (period, yhat, yhat_lower, yhat_upper, interval_level, and the outer
            bounds and level where there are).
        past: earlier runs' published forecasts of months now observed (period, yhat), drawn as points.
    """
    fig, ax = _figure(9, 4.2, bottom=0.75)
    periods = pd.to_datetime(history["period"])
    start = max(periods.min(), periods.max() - pd.DateOffset(years=recent_years))
    shown = periods >= start
    visible = [history["value"][shown]]
    ax.plot(periods[shown], history["value"][shown], color="black", linewidth=1.3, label="actual")
    hperiods = pd.to_datetime(pd.Series(holdout["periods"]))
    for kind, prediction in holdout["predictions"].items():
        ax.plot(hperiods, prediction, linestyle="--", linewidth=1, label=f"{kind} on the holdout")
        visible.append(pd.Series(prediction))
    if past is not None and len(past):
        recent = past[pd.to_datetime(past["period"]) >= start]
        ax.scatter(pd.to_datetime(recent["period"]), recent["yhat"], s=14, color="tab:blue", zorder=3,
                   label="past published forecasts")  # fmt: skip
        visible.append(recent["yhat"])
    if len(forecast):
        # The forecast starts at its first month: the last actual is not one of its points.
        fperiods = pd.to_datetime(forecast["period"])
        kind = forecast["model_kind"].iloc[0]
        for lo, hi, level, alpha in (
            ("yhat_lower_outer", "yhat_upper_outer", "interval_level_outer", 0.12),
            ("yhat_lower", "yhat_upper", "interval_level", 0.25),
        ):
            if lo in forecast and forecast[lo].notna().any():
                value = forecast[level].dropna()
                band = f"{value.iloc[0]:.0%} interval" if len(value) else "interval"
                ax.fill_between(fperiods, forecast[lo].astype(float), forecast[hi].astype(float), color="tab:red",
                                alpha=alpha, linewidth=0, label=band)  # fmt: skip
                visible += [forecast[lo], forecast[hi]]
        ax.plot(fperiods, forecast["yhat"], color="tab:red", linewidth=1.6, marker="o", markersize=2.5,
                label=f"forecast ({kind})")  # fmt: skip
        visible.append(forecast["yhat"])
        ax.axvline(periods.max(), color="grey", linewidth=0.8, linestyle=":")
        end = fperiods.max()
    else:
        end = periods.max()
    values = pd.concat([pd.Series(v, dtype=float) for v in visible]).dropna()
    if len(values):
        low, high = float(values.min()), float(values.max())
        pad = 0.06 * (high - low or abs(high) or 1.0)
        ax.set_ylim(low - pad, high + pad)
    ax.set_xlim(start - pd.DateOffset(months=1), end + pd.DateOffset(months=1))
    ax.set_xlabel("month")
    ax.set_ylabel("value (units as received)")
    _title(ax, title)
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_accuracy(by_month: pd.DataFrame, path: Path, level: float = 0.8) -> Path:
    """Realised MASE of the published forecasts per observed month, and the share of actuals inside the interval.

    Args:
        by_month: columns period, realised_mase, coverage.
    """
    from matplotlib.ticker import PercentFormatter

    fig, ax = _figure(9, 3.4, bottom=0.75, right=0.8)
    periods = pd.to_datetime(by_month["period"])
    ax.plot(periods, by_month["realised_mase"].astype(float), color="tab:blue", marker="o", markersize=3,
            label="realised MASE")  # fmt: skip
    ax.set_xlabel("observed month")
    ax.set_ylabel("MASE (mean over series)")
    ax.set_ylim(bottom=0)
    share = ax.twinx()
    share.plot(periods, by_month["coverage"].astype(float), color="tab:green", linestyle="--",
               label=f"share inside the {level:.0%} interval")  # fmt: skip
    share.axhline(level, color="tab:green", linewidth=0.6, linestyle=":")
    share.set_ylim(0, 1.05)
    share.yaxis.set_major_formatter(PercentFormatter(1.0))
    share.set_ylabel("actuals inside the interval")
    lines = ax.get_legend_handles_labels()
    more = share.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    _title(ax, "How the published forecasts did")
    return _save(fig, path)
