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
