"""Summaries of runs with many series: capped rows and names, with counts of the rest."""

from __future__ import annotations

from seqcast.report import SHOWN_NAMES, SHOWN_ROWS, compact, names, shown


def test_a_compact_outcome_keeps_the_first_rows_and_counts_them_all() -> None:
    outcome = {"run_id": "r", "metrics": [{"i": i} for i in range(SHOWN_ROWS + 100)], "forecasts": [{"i": 0}]}
    small = compact(outcome)
    assert small["metrics"] == outcome["metrics"][:SHOWN_ROWS]
    assert small["forecasts"] == outcome["forecasts"] and small["run_id"] == "r"
    assert small["rows"] == {"metrics": SHOWN_ROWS + 100, "forecasts": 1}
    assert len(outcome["metrics"]) == SHOWN_ROWS + 100  # the outcome itself is left whole


def test_long_tables_and_name_lists_say_where_the_rest_are() -> None:
    table, note = shown([{"i": i} for i in range(SHOWN_ROWS + 1)], "latest_metrics")
    assert (
        len(table) == SHOWN_ROWS
        and note == f"first {SHOWN_ROWS} of {SHOWN_ROWS + 1} rows; all of them are in the table `latest_metrics`"
    )
    assert shown([{"i": 1}], "latest_metrics") == ([{"i": 1}], "")
    ids = [f"s{i}" for i in range(SHOWN_NAMES + 3)]
    assert names(ids).endswith(f"s{SHOWN_NAMES - 1} ... and 3 more") and names([]) == "none"
