"""Human-readable views of runs: tables, the markdown summary (Prefect UI), the static pages (a run's page and
the index across runs, in reports/)."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

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
    parts = [f"# seqcast run {md(outcome.run_id)}", ""]
    if outcome.headline:
        parts += ["| | |", "|---|---|"] + [f"| {md(label)} | {md(value)} |" for label, value in outcome.headline] + [""]
    for series_id, reason in list(outcome.degraded.items())[:SHOWN_NAMES]:
        parts.append(f"- degraded {md(series_id)}: {md(reason)}; retrained")
    parts += ["", "## Ingested"]
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
        # A path, not a link: a page on this machine's disk does not open from the UI.
        parts.append(f"- report page (open it on the machine that ran): {md(outcome.report)}")
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------------------------- the pages

_TEMPLATES = Path(__file__).parent / "templates"
#: Series listed under "needs attention" on a run's page.
SHOWN_ATTENTION = 50
#: Runs on the index page.
INDEX_RUNS = 60


def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )


def page_name(run_id: str) -> str:
    """The file name of a run's page under reports/."""
    return f"{safe_name(run_id)}.html"


def _num(value: Any, digits: int = 3) -> str:
    return "-" if value is None or pd.isna(value) else f"{float(value):.{digits}f}"


def _pct(value: Any, signed: bool = False) -> str:
    if value is None or pd.isna(value) or not math.isfinite(float(value)):
        return "-"
    return f"{float(value):+.0%}" if signed else f"{float(value):.0%}"


def _amount(value: Any) -> str:
    if value is None or pd.isna(value):
        return "-"
    value = float(value)
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def _mean(frame: pd.DataFrame, column: str) -> float:
    values = pd.to_numeric(frame[column], errors="coerce").dropna() if column in frame else pd.Series(dtype=float)
    return float(values.mean()) if len(values) else float("nan")


def _level_label(frames: dict[str, pd.DataFrame]) -> str:
    levels = pd.to_numeric(frames["forecasts"].get("interval_level", pd.Series(dtype=float)), errors="coerce").dropna()
    return f"{levels.iloc[0]:.0%}" if len(levels) else "80%"


def series_rows(frames: dict[str, pd.DataFrame]) -> list[dict[str, Any]]:
    """Per series: status, champion and its margin over seasonal naive, the next 12 months against the last 12,
    realised accuracy (a pure mapping of `store.run_page_frames`)."""
    forecasts = frames["forecasts"].sort_values(["series_id", "step"])
    recent = frames["recent"]
    accuracy = frames["accuracy"].set_index("series_id") if len(frames["accuracy"]) else None
    by_fc = {sid: g for sid, g in forecasts.groupby("series_id", sort=False)}
    by_recent = {sid: g for sid, g in recent.groupby("series_id", sort=False)}
    rows = []
    for s in frames["series"].to_dict("records"):
        sid = str(s["series_id"])
        published = s["status"] in ("trained", "reused")
        status = ("degraded, retrained" if s["degraded"] else s["status"]) if published else s["status"]
        if published and s["source_run"] != frames["run"]["run_id"].iloc[0]:
            status += " (forecast unchanged)"
        fc, last = by_fc.get(sid), by_recent.get(sid)
        k = min(12, 0 if fc is None else len(fc), 0 if last is None else len(last))
        next12 = float(fc["yhat"].iloc[:k].sum()) if k and fc is not None else float("nan")
        last12 = float(last["value"].iloc[-k:].sum()) if k and last is not None else float("nan")
        champion, naive = s["champion_mase"], s["naive_mase"]
        margin = 1 - float(champion) / float(naive) if published and _finite(champion) and _finite(naive) and float(
            naive) > 0 else float("nan")  # fmt: skip
        realised = accuracy.loc[sid] if accuracy is not None and sid in accuracy.index else None
        rows.append(
            {
                "series_id": sid,
                "anchor": safe_name(sid),
                "status": status,
                "reason": s["reason"] or "",
                "champion": s["champion"] if published and s["champion"] else "-",
                "champion_mase": _num(champion) if published else "-",
                "naive_mase": _num(naive) if published else "-",
                "margin": _pct(margin),
                "next12": _amount(next12) if published else "-",
                "last12": _amount(last12) if published else "-",
                "change": _pct(next12 / last12 - 1, signed=True) if published and k and last12 else "-",
                "realised_mase": "-" if realised is None else _num(realised["mase"]),
                "coverage": "-" if realised is None else _pct(realised["coverage"]),
                "source_run": s["source_run"],
                "degraded": bool(s["degraded"]),
                "published": published,
            }
        )
    return rows


def _finite(value: Any) -> bool:
    return value is not None and not pd.isna(value) and math.isfinite(float(value))


def headline(frames: dict[str, pd.DataFrame]) -> tuple[tuple[str, str], ...]:
    """The run's headline numbers (label, value): the page's cards and the Prefect summary's first table."""
    series = frames["series"]
    published = series[series["status"].isin(["trained", "reused"])]
    run_id = frames["run"]["run_id"].iloc[0]
    champion, naive = _mean(published, "champion_mase"), _mean(published, "naive_mase")
    items = [
        ("series published", str(len(published))),
        ("trained", str(int((series["status"] == "trained").sum()))),
        ("reused", str(int((series["status"] == "reused").sum()))),
        ("forecasts unchanged", str(int((published["source_run"] != run_id).sum()))),
        ("not published", str(int((~series["status"].isin(["trained", "reused"])).sum()))),
        ("degraded", str(int(series["degraded"].astype(bool).sum()))),
        ("holdout MASE (champions, mean)", _num(champion)),
        ("holdout MASE (seasonal naive, mean)", _num(naive)),
    ]
    accuracy = frames["accuracy"]
    if len(accuracy):
        items += [
            ("realised MASE (last 12 months)", _num(_mean(accuracy, "mase"))),
            (f"realised coverage {_level_label(frames)}", _pct(_mean(accuracy, "coverage"))),
        ]
    return tuple(items)


def _chart(plots_dir: Path, reports_dir: Path, runs: Sequence[str], sid: str, name: str) -> str:
    """The relative link to a series' chart from the first of these runs that drew it ("" if none did)."""
    for run_id in runs:
        path = plots_dir / run_id / f"{safe_name(sid)}-{name}.png"
        if path.is_file():
            return os.path.relpath(path, reports_dir)
    return ""


def write_run_page(
    frames: dict[str, pd.DataFrame], reports_dir: Path, plots_dir: Path, database: str, holdout_months: int
) -> Path:
    """A run's page (`reports/<run id>.html`), from what it published: headline, what needs attention, every
    series (up to SHOWN_ROWS), and the charts drawn. Links are relative: it opens from the data folder."""
    run = frames["run"].iloc[0]
    run_id = str(run["run_id"])
    rows = series_rows(frames)
    attention = [
        {"what": "degraded" if r["degraded"] else r["status"], "series_id": r["series_id"], "anchor": r["anchor"],
         "reason": r["reason"].removeprefix("degraded: ")}
        for r in rows if r["degraded"] or not r["published"]
    ]  # fmt: skip
    charts = []
    for r in rows:
        forecast_chart = _chart(plots_dir, reports_dir, [run_id, r["source_run"]], r["series_id"], "forecast")
        if forecast_chart:
            loss = _chart(plots_dir, reports_dir, [run_id, r["source_run"]], r["series_id"], "loss")
            charts.append({**r, "forecast_chart": forecast_chart, "loss_chart": loss})
    published_rows = sum(r["published"] for r in rows)
    context = {
        "run_id": run_id,
        "published": _when(run["finished_at"]),
        "status": str(run["status"]),
        "message": run["message"] or "",
        "headline": [{"label": label, "value": value} for label, value in headline(frames)],
        "attention": attention[:SHOWN_ATTENTION],
        "attention_more": max(0, len(attention) - SHOWN_ATTENTION),
        "rows": rows[:SHOWN_ROWS],
        "series_note": f"First {SHOWN_ROWS} of {len(rows)} series; all are in series_status." if len(rows) > SHOWN_ROWS
        else "",
        "charts": charts,
        "charts_note": f"Charts for {len(charts)} of {published_rows} published series (setting max_plots)."
        if len(charts) < published_rows else "",
        "holdout_months": holdout_months,
        "inner_label": _level_label(frames),
        "ingested": [batch_line(b) for b in _batches(frames["batches"])] or ["no new files"],
        "database": database,
    }  # fmt: skip
    return _render("run.html", context, reports_dir / page_name(run_id))


def _when(value: Any) -> str:
    if value is None or pd.isna(value):
        return "(not published)"
    return f"{pd.Timestamp(value):%Y-%m-%d %H:%M} UTC"


def _batches(frame: pd.DataFrame) -> list[Batch]:
    fields = {f.name for f in dataclasses.fields(Batch)} - {"series"}
    return [Batch(**{k: v for k, v in row.items() if k in fields}) for row in frame.to_dict("records")]


def _render(template: str, context: dict[str, Any], target: Path) -> Path:
    page = _environment().get_template(template).render(**context)
    target.parent.mkdir(parents=True, exist_ok=True)
    style = target.parent / "style.css"
    css = (_TEMPLATES / "style.css").read_text()
    if not style.is_file() or style.read_text() != css:
        atomic_write(style, lambda tmp: tmp.write_text(css, encoding="utf-8"))
    return atomic_write(target, lambda tmp: tmp.write_text(page, encoding="utf-8"))


def index_rows(overview: dict[str, pd.DataFrame], reports_dir: Path) -> list[dict[str, Any]]:
    """Per run, newest first: status, counts, champion changes and series added since the previous completed run,
    holdout and realised accuracy (a pure mapping of `store.runs_overview`, with the pages found on disk)."""
    runs = overview["runs"]
    series = overview["series"]
    by_run = overview["by_run"].set_index("run_id") if len(overview["by_run"]) else None
    per_run = {rid: g for rid, g in series.groupby("run_id", sort=False)}
    rows: list[dict[str, Any]] = []
    previous: dict[str, str] | None = None
    for run in reversed(runs.to_dict("records")):  # oldest first, to compare with the run before
        rid = str(run["run_id"])
        group = per_run.get(rid, series.iloc[0:0])
        published = group[group["status"].isin(["trained", "reused"])]
        champions = dict(zip(published["series_id"].astype(str), published["champion"].astype(str), strict=True))
        completed = run["status"] == "completed"
        changes = added = "-"
        if completed and previous is not None:
            changes = str(sum(1 for sid, kind in champions.items() if sid in previous and previous[sid] != kind))
            added = str(sum(1 for sid in champions if sid not in previous))
        elif completed:
            added = str(len(champions))
        realised = by_run.loc[rid] if by_run is not None and rid in by_run.index else None
        page = reports_dir / page_name(rid)
        sources = set(published["source_run"])
        if not page.is_file() and len(sources) == 1:  # a run that changed nothing: the page that stands for it
            page = reports_dir / page_name(str(next(iter(sources))))
        rows.append(
            {
                "run_id": rid,
                "page": page.name if page.is_file() else "",
                "started": f"{pd.Timestamp(run['started_at']):%Y-%m-%d %H:%M}",
                "status": str(run["status"]),
                "message": (run["message"] or "")[:160] if not completed else "",
                "new_observations": int(run["new_observations"] or 0),
                "trained": int(run["series_trained"] or 0),
                "reused": int(run["series_reused"] or 0),
                "skipped": int(run["series_skipped"] or 0),
                "degraded": int(group["degraded"].astype(bool).sum()),
                "added": added,
                "changes": changes,
                "champion_mase": _num(_mean(published, "champion_mase")) if completed else "-",
                "realised_mase": "-" if realised is None else _num(realised["realised_mase"]),
                "coverage": "-" if realised is None else _pct(realised["coverage"]),
            }
        )
        if completed:
            previous = champions
    return list(reversed(rows))


def write_index(overview: dict[str, pd.DataFrame], reports_dir: Path, database: str, inner_label: str = "80%"
                ) -> Path:  # fmt: skip
    """`reports/index.html`: every run (the latest INDEX_RUNS) and the realised accuracy over time."""
    from seqcast import plots

    chart = ""
    if len(overview["by_month"]):
        chart = plots.plot_accuracy(overview["by_month"], reports_dir / "accuracy.png").name
    rows = index_rows(overview, reports_dir)
    latest = next((r["started"] for r in rows if r["status"] == "completed"), "")
    context = {"runs": rows, "latest": latest, "database": database, "accuracy_chart": chart,
               "inner_label": inner_label}  # fmt: skip
    return _render("index.html", context, reports_dir / "index.html")
