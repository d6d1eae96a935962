"""Human-readable views of a run's outcome: tables and a markdown summary."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def metrics_table(outcome: dict[str, Any]) -> list[dict[str, Any]]:
    """Holdout metrics rows: series, model, MAPE, sMAPE, MASE, champion marked; baseline included."""
    rows = sorted(
        outcome["metrics"],
        key=lambda m: (m["series_id"], m["model_kind"] != "seasonal_naive", m["model_kind"]),
    )
    return [
        {
            "series_id": m["series_id"],
            "model_kind": m["model_kind"],
            "holdout": f"{m['holdout_start'][:7]}..{m['holdout_end'][:7]}",
            "mae": _fmt(m["mae"], 2),
            "rmse": _fmt(m["rmse"], 2),
            "mape_pct": _fmt(m["mape"], 2),
            "smape_pct": _fmt(m["smape"], 2),
            "mase": _fmt(m["mase"], 3),
            "champion": "yes" if m["is_champion"] else "",
        }
        for m in rows
    ]


def forecast_table(outcome: dict[str, Any]) -> list[dict[str, Any]]:
    """Published (champion) forecast rows."""
    return [
        {
            "series_id": f["series_id"],
            "model_kind": f["model_kind"],
            "period": f["period"][:7],
            "step": f["step"],
            "yhat": _fmt(f["yhat"], 2),
            "yhat_lower": _fmt(f["yhat_lower"], 2),
            "yhat_upper": _fmt(f["yhat_upper"], 2),
        }
        for f in sorted(outcome["forecasts"], key=lambda f: (f["series_id"], f["step"]))
    ]


def ingest_lines(outcome: dict[str, Any]) -> list[str]:
    lines = []
    for b in outcome["batches"]:
        name = b["source"].rsplit("/", 1)[-1]
        if b["status"] == "applied":
            lines.append(
                f"{name}: {b['rows_read']} rows read, {b['rows_inserted']} new, {b['rows_updated']} revised, "
                f"{b['rows_unchanged']} unchanged, {b['rows_rejected']} rejected"
            )
        elif b["status"] == "duplicate":
            lines.append(f"{name}: already ingested ({b['error']}); nothing changed")
        else:
            lines.append(f"{name}: rejected: {b['error']}")
    return lines or ["no new files"]


def summary_markdown(outcome: dict[str, Any]) -> str:
    """The run summary as markdown (for the Prefect UI and the report page)."""
    parts = [f"# seqcast run {outcome['run_id']}", "", "## Ingested"]
    parts += [f"- {line}" for line in ingest_lines(outcome)]
    parts += [
        "",
        f"**New observations:** {outcome['new_observations']}, **revised:** {outcome.get('revised_observations', 0)}",
        "",
        "## Series",
    ]
    parts += [
        f"- trained (new or revised data): {', '.join(outcome['trained']) or 'none'}",
        f"- reused (nothing changed): {', '.join(outcome['reused']) or 'none'}",
    ]
    for item in outcome["skipped"]:
        parts.append(f"- skipped `{item['series_id']}`: {item['reason']}")
    if outcome["metrics"]:
        parts += [
            "",
            "## Holdout metrics",
            "",
            "| series | model | MAPE % | sMAPE % | MASE | champion |",
            "|---|---|---|---|---|---|",
        ]
        parts += [
            f"| {m['series_id']} | {m['model_kind']} | {m['mape_pct']} | {m['smape_pct']} | {m['mase']} | "
            f"{m['champion']} |"
            for m in metrics_table(outcome)
        ]
    parts += [
        "",
        "## Where things are",
        f"- database: `{outcome['database']}`",
        f"- data folder: `{outcome['data_dir']}`",
    ]
    if outcome.get("plots"):
        parts.append(f"- plots: `{outcome['plots'][0].rsplit('/', 1)[0]}` ({len(outcome['plots'])} PNG files)")
    return "\n".join(parts) + "\n"
