"""The command line, through typer's runner: exit codes, one-line errors, human output."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from seqcast.cli import app

runner = CliRunner()


@pytest.fixture
def data(tmp_path: Path) -> list[str]:
    return ["--data-dir", str(tmp_path / "data")]


def test_help_everywhere() -> None:
    for args in ([], ["run"], ["ingest"], ["forecasts"], ["metrics"]):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


def test_ingest_reports_counts_duplicates_and_rejects(tmp_path: Path, data: list[str]) -> None:
    good = tmp_path / "sales.csv"
    good.write_text("series_id,period,value\nshop-1,2024-01,10\nshop-1,2024-02,oops\n")
    result = runner.invoke(app, ["ingest", str(good), *data])
    assert result.exit_code == 0, result.output
    assert "2 rows read, 1 new, 0 revised, 0 unchanged, 1 rejected (series shop-1)" in result.output

    again = runner.invoke(app, ["ingest", str(good), *data])
    assert again.exit_code == 0 and "already ingested" in again.output

    bad = tmp_path / "broken.csv"
    bad.write_text("series_id,period\nshop-1,2024-01\n")
    result = runner.invoke(app, ["ingest", str(bad), *data])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: broken.csv: missing column 'value'")


def test_views_need_a_database(data: list[str]) -> None:
    result = runner.invoke(app, ["forecasts", *data])
    assert result.exit_code == 1 and "run `seqcast run` first" in result.stderr


def test_run_without_orchestrator_then_read_the_views(data: list[str]) -> None:
    result = runner.invoke(app, ["run", "--orchestrator", "none", "--epochs", "20", "--model", "rnn", *data])
    assert result.exit_code == 0, result.output + result.stderr
    out = result.output
    assert "air_passengers.csv: 144 rows read, 144 new" in out
    assert "trained   air_passengers" in out
    assert "seasonal_naive" in out and "1961-12" in out
    assert "database  sqlite:///" in out and "plots     " in out

    rerun = runner.invoke(app, ["run", "--orchestrator", "none", "--epochs", "20", "--model", "rnn", *data])
    assert "reused    air_passengers  (no new data: stored models reused, nothing retrained)" in rerun.output

    forecasts = runner.invoke(app, ["forecasts", *data])
    assert forecasts.exit_code == 0 and "1961-01" in forecasts.output and "1961-12" in forecasts.output
    metrics = runner.invoke(app, ["metrics", "--series", "air_passengers", *data])
    assert metrics.exit_code == 0 and "seasonal_naive" in metrics.output
    missing = runner.invoke(app, ["metrics", "--series", "nope", *data])
    assert missing.exit_code == 1 and "no rows in latest_metrics for series 'nope'" in missing.stderr


def test_run_refuses_a_missing_source_and_bad_settings(data: list[str]) -> None:
    result = runner.invoke(app, ["run", "--source", "/nonexistent/file.csv", *data])
    assert result.exit_code == 1 and "source file not found: /nonexistent/file.csv" in result.stderr
    result = runner.invoke(app, ["run", "--model", "transformer", *data])
    assert result.exit_code == 1 and "invalid settings" in result.stderr


def test_run_refuses_an_unknown_orchestrator_or_task_runner_before_starting_anything(data: list[str]) -> None:
    result = runner.invoke(app, ["run", "--orchestrator", "airflow", *data])
    assert result.exit_code == 1 and "unknown orchestrator 'airflow': use 'prefect' or 'none'" in result.stderr
    result = runner.invoke(app, ["run", "--task-runner", "ray", *data])
    assert result.exit_code == 1 and "unknown task runner 'ray': use 'threads' or 'dask'" in result.stderr


def test_run_with_a_bad_inbox_file_publishes_the_rest_and_exits_non_zero(tmp_path: Path, data: list[str]) -> None:
    from seqcast.ingest import bundled_series_path

    inbox = tmp_path / "data" / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "air_passengers.csv").write_bytes(bundled_series_path().read_bytes())
    (inbox / "bad.csv").write_text("series_id;period;value\nx;2020-01;1\n")
    result = runner.invoke(app, ["run", "--orchestrator", "none", "--epochs", "10", "--model", "rnn", *data])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: 1 file(s) rejected; first: bad.csv:")
    assert "trained   air_passengers" in result.output
    archived = sorted(p.name.split("-", 3)[-1] for p in (tmp_path / "data" / "archive").iterdir())
    assert any(name.startswith("bad-") for name in archived) and list(inbox.iterdir()) == []


def test_report_writes_a_static_page_with_tables_and_plots(tmp_path: Path, data: list[str]) -> None:
    ran = runner.invoke(app, ["run", "--orchestrator", "none", "--epochs", "10", "--model", "rnn", *data])
    assert ran.exit_code == 0, ran.stderr
    result = runner.invoke(app, ["report", *data])
    assert result.exit_code == 0, result.stderr
    page = Path(result.output.split("report", 1)[1].strip())
    html = page.read_text()
    assert page.parent == (tmp_path / "data" / "reports").resolve()
    assert "Holdout metrics" in html and "seasonal_naive" in html and "1961-12" in html
    images = [part.split('"', 1)[0] for part in html.split('<img src="')[1:]]
    assert len(images) == 2 and all((page.parent / src).resolve().is_file() for src in images)
    missing = runner.invoke(app, ["report", "--run-id", "nope", *data])
    assert missing.exit_code == 1 and "no completed run 'nope'" in missing.stderr
