"""Summaries of runs with many series: capped rows and names, with counts of the rest."""

from __future__ import annotations

from seqcast.report import SHOWN_NAMES, SHOWN_ROWS, names, shown


def test_long_tables_and_name_lists_say_where_the_rest_are() -> None:
    table, note = shown([{"i": i} for i in range(SHOWN_ROWS + 1)], "latest_metrics")
    assert (
        len(table) == SHOWN_ROWS
        and note == f"first {SHOWN_ROWS} of {SHOWN_ROWS + 1} rows; all of them are in the table `latest_metrics`"
    )
    assert shown([{"i": 1}], "latest_metrics") == ([{"i": 1}], "")
    ids = [f"s{i}" for i in range(SHOWN_NAMES + 3)]
    assert names(ids).endswith(f"s{SHOWN_NAMES - 1} ... and 3 more") and names([]) == "none"


def test_the_summary_shows_hostile_series_ids_as_text_never_as_links_or_tags() -> None:
    from markdown_it import MarkdownIt

    from seqcast.records import Batch, MetricRow, RunOutcome, Scores, Skip
    from seqcast.report import summary_markdown

    hostile = ["[x](javascript:alert(1))", "<img src=x onerror=alert(1)>", "a|b", "`code`", "**bold**"]
    outcome = RunOutcome(
        run_id="r1",
        new_observations=1,
        revised_observations=0,
        batches=(Batch("b", "/in/[y](javascript:x).csv", "rejected", error="<b>bad</b>"),),
        trained=tuple(hostile),
        reused=(),
        skipped=tuple(Skip(s, "too short [z](javascript:z)") for s in hostile),
        champions=dict.fromkeys(hostile, "rnn"),
        metrics=tuple(
            MetricRow(s, "rnn", "2020-01-01", "2020-12-01", Scores(1.0, 1.0, 1.0, 1.0, 1.0), True, None)
            for s in hostile
        ),
        forecasts=(),
        database="sqlite:///x",
        data_dir="/d",
    )
    page = MarkdownIt("commonmark").enable("table").render(summary_markdown(outcome))
    assert "<a " not in page and "<img" not in page and "<b>" not in page and "<code>" not in page
    assert "<strong>bold" not in page
    assert "[x](javascript:alert(1))" in page  # shown literally
    rows = [block for block in page.split("<tr>") if "<td>" in block]
    assert len(rows) == len(hostile) and all(r.count("<td>") == 6 for r in rows)  # a | adds no column


def _runs(tmp_path, arrivals=2):  # type: ignore[no-untyped-def]
    """A first run on 60 months of three series, then one run per arriving month (the stand-in model and ETS)."""
    import pandas as pd

    from seqcast import pipeline
    from seqcast.config import RunConfig
    from tests.conftest import synthetic_panel

    panel = synthetic_panel(3, 72)
    panel["period"] = pd.to_datetime(panel["period"]).dt.strftime("%Y-%m")
    config = RunConfig(data_dir=str(tmp_path / "data"), models=["fake"], statistical=["ets"], use_bundled_demo=False)
    outcomes = []
    for i, frame in enumerate([panel.groupby("series_id").head(60)]
                              + [panel.groupby("series_id").nth(60 + m) for m in range(arrivals)]):  # fmt: skip
        source = tmp_path / f"part{i}.csv"
        frame.to_csv(source, index=False)
        outcomes.append(pipeline.run_pipeline(config.model_copy(update={"sources": [str(source)]})))
    return config, panel, outcomes


def test_a_runs_page_shows_what_a_planner_needs_and_seqcast_report_rebuilds_the_same_page(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import re
    import sqlite3
    import subprocess
    import sys
    from pathlib import Path

    config, panel, outcomes = _runs(tmp_path)
    last = outcomes[-1]
    page = Path(last.report)
    text = page.read_text()
    db = Path(config.data_dir) / "seqcast.db"
    with sqlite3.connect(db) as conn:
        champion, mase = conn.execute(
            "SELECT model_kind, mase FROM latest_metrics WHERE series_id = 's001' AND is_champion"
        ).fetchone()
        naive = conn.execute(
            "SELECT mase FROM latest_metrics WHERE series_id = 's001' AND model_kind = 'seasonal_naive'"
        ).fetchone()[0]
        next12 = conn.execute("SELECT SUM(yhat) FROM latest_forecasts WHERE series_id = 's001'").fetchone()[0]
    last12 = panel[panel["series_id"] == "s001"]["value"].iloc[50:62].sum()
    assert "<title>Forecasts published 20" in text and f"Run <code>{last.run_id}</code>" in text
    for label, value in last.headline:  # the same headline numbers as the Prefect summary
        assert f'<div class="value">{value}</div><div class="label">{label}</div>' in text
    row = re.search(r'<tr id="row-s001-[0-9a-f]+">(.*?)</tr>', text, re.S)
    assert row is not None
    cells = re.findall(r"<td>(.*?)</td>", row.group(1), re.S)
    assert cells[2] == champion and cells[3] == f"{mase:.3f}" and cells[4] == f"{naive:.3f}"
    assert cells[5] == f"{1 - mase / naive:.0%}"
    assert cells[6] == f"{next12:,.0f}" and cells[7] == f"{last12:,.0f}" and cells[8] == f"{next12 / last12 - 1:+.0%}"
    assert cells[9] != "-"  # realised accuracy: two months of earlier forecasts are observed
    # Every chart it links is there, relative to the page.
    images = re.findall(r'<img src="([^"]+)"', text)
    assert images and all((page.parent / src).is_file() for src in images)
    # The index lists every run, newest first, each linking its page.
    index = (page.parent / "index.html").read_text()
    links = re.findall(r'<a href="([^"]+\.html)">([^<]+)</a>', index)
    assert [run_id for _, run_id in links] == [o.run_id for o in reversed(outcomes)]
    assert 'src="accuracy.png"' in index and (page.parent / "accuracy.png").is_file()

    # `seqcast report` rebuilds the page from the tables: the same page.
    page.unlink()
    done = subprocess.run([sys.executable, "-m", "seqcast", "report", "--data-dir", config.data_dir],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert page.read_text() == text


def test_a_rerun_that_changes_nothing_draws_no_charts_and_writes_no_page(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    from seqcast import pipeline

    config, _panel, outcomes = _runs(tmp_path, arrivals=0)
    plots = Path(config.data_dir) / "plots"
    reports = Path(config.data_dir) / "reports"
    before = (sorted(p.name for p in plots.iterdir()), sorted(p.name for p in reports.glob("2*.html")))
    again = pipeline.run_pipeline(config)
    assert again.unchanged and not again.trained
    assert (sorted(p.name for p in plots.iterdir()), sorted(p.name for p in reports.glob("2*.html"))) == before
    assert again.report == outcomes[0].report  # the page of the run whose forecasts stand
    assert set(again.plots) == set(outcomes[0].plots)
    assert again.run_id in (reports / "index.html").read_text()


def test_prune_keeps_the_latest_runs_files_and_never_received_files_observations_or_the_ledger(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import sqlite3
    import subprocess
    import sys
    from pathlib import Path

    from seqcast import pipeline

    config, _panel, outcomes = _runs(tmp_path, arrivals=3)
    root = Path(config.data_dir)

    def counts() -> dict[str, int]:
        with sqlite3.connect(root / "seqcast.db") as conn:
            tables = ("observations", "forecast_outcomes", "forecasts", "metrics", "ingest_batches", "model_runs")
            return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}

    archived = sorted(p.name for p in (root / "archive").rglob("*") if p.is_file())
    tables = counts()
    done = subprocess.run([sys.executable, "-m", "seqcast", "prune", "--keep-runs", "2", "--data-dir", str(root)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    kept = [o.run_id for o in outcomes[-2:]]
    assert sorted(p.name for p in (root / "plots").iterdir()) == sorted(kept)
    assert sorted(p.stem.rsplit("-", 1)[0] for p in (root / "reports").glob("2*.html")) == sorted(kept)
    with sqlite3.connect(root / "seqcast.db") as conn:
        sql = (
            "SELECT model_id FROM metrics WHERE run_id IN (?, ?) "
            "UNION SELECT model_id FROM forecasts WHERE run_id IN (?, ?)"
        )
        used = {r[0] for r in conn.execute(sql, kept * 2)}
        first = {r[0] for r in conn.execute("SELECT model_id FROM forecasts WHERE run_id = ?", (outcomes[0].run_id,))}
    on_disk = {p.stem for p in (root / "models").glob("*.pt")}
    assert used - {None} <= on_disk and not (first - used) & on_disk
    assert sorted(p.name for p in (root / "archive").rglob("*") if p.is_file()) == archived
    assert counts() == tables  # no row of any table is pruned
    # The kept pages still open: their charts are there; the index links only pages that exist.
    index = (root / "reports" / "index.html").read_text()
    assert outcomes[0].run_id in index and f'href="{Path(outcomes[0].report).name}"' not in index
    # And the next run works as before.
    assert pipeline.run_pipeline(config).champions
