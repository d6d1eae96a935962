"""Human-readable views of a run's outcome: tables, a markdown summary, a static HTML page."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seqcast._files import atomic_write, safe_name
from seqcast.records import Batch, RunOutcome, Skip

#: Rows of a table shown in the UI, the summary and the report page; the database tables hold them all.
SHOWN_ROWS = 600
#: Series named one by one in a summary; the rest are counted.
SHOWN_NAMES = 20


def names(ids: Sequence[str]) -> str:
    """Up to SHOWN_NAMES ids, then how many more."""
    if not ids:
        return "none"
    more = f" ... and {len(ids) - SHOWN_NAMES} more" if len(ids) > SHOWN_NAMES else ""
    return ", ".join(ids[:SHOWN_NAMES]) + more


def shown(table: list[dict[str, Any]], what: str) -> tuple[list[dict[str, Any]], str]:
    """The first SHOWN_ROWS rows of a table, and a note saying where the rest are (or "")."""
    if len(table) <= SHOWN_ROWS:
        return table, ""
    return table[:SHOWN_ROWS], f"first {SHOWN_ROWS} of {len(table)} rows; all of them are in the table `{what}`"


def champion_counts(outcome: RunOutcome) -> str:
    counts: dict[str, int] = {}
    for kind in outcome.champions.values():
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def metrics_table(outcome: RunOutcome) -> list[dict[str, Any]]:
    """Holdout metrics rows: series, model, MAPE, sMAPE, MASE, champion marked; baselines first."""
    rows = sorted(outcome.metrics, key=lambda m: (m.series_id, m.model_kind != "seasonal_naive", m.model_kind))
    return [
        {
            "series_id": m.series_id,
            "model_kind": m.model_kind,
            "holdout": f"{m.holdout_start[:7]}..{m.holdout_end[:7]}",
            "mae": _fmt(m.scores.mae, 2),
            "rmse": _fmt(m.scores.rmse, 2),
            "mape_pct": _fmt(m.scores.mape, 2),
            "smape_pct": _fmt(m.scores.smape, 2),
            "mase": _fmt(m.scores.mase, 3),
            "champion": "yes" if m.is_champion else "",
        }
        for m in rows
    ]


def forecast_table(outcome: RunOutcome) -> list[dict[str, Any]]:
    """Published (champion) forecast rows."""
    return [
        {
            "series_id": f.series_id,
            "model_kind": f.model_kind,
            "period": f.period[:7],
            "step": f.step,
            "yhat": _fmt(f.yhat, 2),
            "yhat_lower": _fmt(f.yhat_lower, 2),
            "yhat_upper": _fmt(f.yhat_upper, 2),
        }
        for f in sorted(outcome.forecasts, key=lambda f: (f.series_id, f.step))
    ]


def batch_line(b: Batch) -> str:
    """One line on what became of a received file."""
    name = Path(b.source).name
    named = f" (series {b.series[0]})" if len(b.series) == 1 else (f" ({len(b.series)} series)" if b.series else "")
    if b.status == "applied":
        return (
            f"{name}: {b.rows_read} rows read, {b.rows_inserted} new, {b.rows_updated} revised, "
            f"{b.rows_unchanged} unchanged, {b.rows_rejected} rejected{named}"
        )
    if b.status == "duplicate":
        return f"{name}: already ingested ({b.error}); nothing changed{named}"
    if b.status == "rejected":
        return f"rejected: {b.error}"
    return str(b.error)  # refused or failed: the reason names the file


def ingest_lines(outcome: RunOutcome) -> list[str]:
    return [batch_line(b) for b in outcome.batches] or ["no new files"]


def not_published_lines(outcome: RunOutcome) -> list[tuple[Skip, str]]:
    """(series, what to say) for each series left out or noted, the first SHOWN_NAMES of each."""
    lines = [(s, "skipped") for s in outcome.skipped[:SHOWN_NAMES]]
    lines += [(s, "note") for s in outcome.notes[:SHOWN_NAMES]]
    return lines


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:&])")


def md(text: object) -> str:
    """Untrusted text (a series id, a file name, a reason) as literal markdown: every character that could
    start markup, a link or an HTML tag is escaped, and line breaks become spaces."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def summary_markdown(outcome: RunOutcome) -> str:
    """The run summary as markdown (for the Prefect UI); every untrusted text escaped."""
    parts = [f"# seqcast run {md(outcome.run_id)}", "", "## Ingested"]
    parts += [f"- {md(line)}" for line in ingest_lines(outcome)]
    parts += [
        "",
        f"**New observations:** {outcome.new_observations}, **revised:** {outcome.revised_observations}",
        "",
        "## Series",
        f"- trained (new or revised data): {md(names(outcome.trained))}",
        f"- reused (nothing changed): {md(names(outcome.reused))}",
    ]
    if outcome.champions:
        parts.append(f"- champions: {md(champion_counts(outcome))}")
    for item, what in not_published_lines(outcome):
        parts.append(f"- {what} {md(item.series_id)}: {md(item.reason)}")
    if len(outcome.skipped) > SHOWN_NAMES:
        parts.append(f"- ... and {len(outcome.skipped) - SHOWN_NAMES} more not trained (table `series_status`)")
    if outcome.metrics:
        table, note = shown(metrics_table(outcome), "latest_metrics")
        parts += [
            "",
            "## Holdout metrics",
            "",
            "| series | model | MAPE % | sMAPE % | MASE | champion |",
            "|---|---|---|---|---|---|",
        ]
        parts += [
            f"| {md(m['series_id'])} | {md(m['model_kind'])} | {m['mape_pct']} | {m['smape_pct']} | {m['mase']} | "
            f"{m['champion']} |"
            for m in table
        ]
        if note:
            parts += ["", f"_{md(note)}_"]
    parts += [
        "",
        "## Where things are",
        f"- database: {md(outcome.database)}",
        f"- data folder: {md(outcome.data_dir)}",
    ]
    if outcome.plots:
        parts.append(f"- plots: {md(Path(outcome.plots[0]).parent)} ({len(outcome.plots)} PNG files)")
    if outcome.report:
        parts.append(f"- report page: {md(outcome.report)}")
    return "\n".join(parts) + "\n"


def write_html(outcome: RunOutcome, reports_dir: Path) -> Path:
    """One static page per run (`reports/<run id>.html`): ingest, series, metrics, forecasts, plots.

    Images are linked relative to the page, so it opens from the data folder with no server.
    """
    esc = html.escape

    def rows(table: list[dict[str, Any]]) -> str:
        return "".join("<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in r.values()) + "</tr>" for r in table)

    def head(table: list[dict[str, Any]]) -> str:
        return "".join(f"<th>{esc(str(k))}</th>" for k in table[0]) if table else ""

    metrics, metrics_note = shown(metrics_table(outcome), "latest_metrics")
    forecasts, forecasts_note = shown(forecast_table(outcome), "latest_forecasts")
    images = "".join(
        f'<figure><img src="{esc(os.path.relpath(p, reports_dir))}" alt="{esc(Path(p).name)}">'
        f"<figcaption>{esc(Path(p).name)}</figcaption></figure>"
        for p in outcome.plots
    )
    skipped = "".join(
        f"<li>{what} <code>{esc(s.series_id)}</code>: {esc(s.reason)}</li>" for s, what in not_published_lines(outcome)
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>seqcast run {esc(outcome.run_id)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child, td:nth-child(2) {{ text-align: left; }}
figure {{ display: inline-block; margin: 0.5rem; }} img {{ max-width: 900px; border: 1px solid #ddd; }}
</style></head><body>
<h1>seqcast run {esc(outcome.run_id)}</h1>
<h2>Ingested</h2><ul>{"".join(f"<li>{esc(line)}</li>" for line in ingest_lines(outcome))}</ul>
<h2>Series</h2><ul>
<li>trained (new or revised data): {esc(names(outcome.trained))}</li>
<li>reused (nothing changed): {esc(names(outcome.reused))}</li>
<li>champions: {esc(champion_counts(outcome) or "none")}</li>{skipped}</ul>
<h2>Holdout metrics</h2><p>{esc(metrics_note)}</p><table><tr>{head(metrics)}</tr>{rows(metrics)}</table>
<h2>Forecasts (champion per series)</h2><p>{esc(forecasts_note)}</p>
<table><tr>{head(forecasts)}</tr>{rows(forecasts)}</table>
<h2>Plots</h2>{images or "<p>none</p>"}
<p>Database: <code>{esc(outcome.database)}</code></p>
</body></html>
"""
    target = Path(reports_dir) / f"{safe_name(outcome.run_id)}.html"
    return atomic_write(target, lambda tmp: tmp.write_text(page, encoding="utf-8"))
