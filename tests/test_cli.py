"""The command line, through typer's runner: exit codes, one-line errors, human output."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from seqcast.cli import app

runner = CliRunner()

# A plain run of the bundled demo series with the deterministic fake model and no statistical models.
FAKE_RUN = ["run", "--orchestrator", "none", "--model", "fake", "--statistical", "none", "--demo"]


@pytest.fixture
def data(tmp_path: Path) -> list[str]:
    return ["--data-dir", str(tmp_path / "data")]


def test_help_everywhere() -> None:
    for args in ([], ["run"], ["ingest"], ["forecasts"], ["metrics"], ["accuracy"], ["prune"], ["report"],
                 ["automation"], ["backtest"], ["serve"]):  # fmt: skip
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
    result = runner.invoke(app, [*FAKE_RUN, *data])
    assert result.exit_code == 0, result.output + result.stderr
    out = result.output
    assert "air_passengers.csv: 144 rows read, 144 new" in out
    assert "trained   air_passengers" in out
    assert "seasonal_naive" in out and "1961-12" in out
    assert "database  sqlite:///" in out and "plots     " in out

    rerun = runner.invoke(app, [*FAKE_RUN, *data])
    assert "reused    air_passengers  (no new data: stored models reused, nothing retrained)" in rerun.output

    forecasts = runner.invoke(app, ["forecasts", *data])
    assert forecasts.exit_code == 0 and "1961-01" in forecasts.output and "1961-12" in forecasts.output
    metrics = runner.invoke(app, ["metrics", "--series", "air_passengers", *data])
    assert metrics.exit_code == 0 and "seasonal_naive" in metrics.output
    missing = runner.invoke(app, ["metrics", "--series", "nope", *data])
    assert missing.exit_code == 1 and "no rows in latest_metrics for series 'nope'" in missing.stderr


def test_a_run_prints_the_first_rows_and_says_where_all_of_them_are(tmp_path: Path, data: list[str]) -> None:
    source = tmp_path / "shops.csv"
    lines = [f"shop-{s},{2020 + m // 12}-{m % 12 + 1:02d},{100 + s + m % 12}" for s in range(6) for m in range(48)]
    source.write_text("series_id,period,value\n" + "\n".join(lines) + "\n")
    run = ["run", "--orchestrator", "none", "--model", "fake", "--statistical", "none", "--source", str(source)]
    result = runner.invoke(app, [*run, *data])
    assert result.exit_code == 0, result.output + result.stderr
    # 6 series x 12 months published: 60 printed, then where the other 12 are.
    assert "first 60 of 72 rows; all of them: seqcast forecasts, or the view latest_forecasts" in result.output
    assert "shop-4" in result.output and "shop-5" not in result.output.split("Forecast (champion")[1]


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
    result = runner.invoke(app, [*FAKE_RUN, *data])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: 1 file(s) rejected; first: bad.csv:")
    assert "trained   air_passengers" in result.output
    archived = sorted(p.name.split("-", 3)[-1] for p in (tmp_path / "data" / "archive").iterdir())
    assert any(name.startswith("bad-") for name in archived) and list(inbox.iterdir()) == []


def test_report_writes_a_static_page_with_tables_and_plots(tmp_path: Path, data: list[str]) -> None:
    ran = runner.invoke(app, [*FAKE_RUN, *data])
    assert ran.exit_code == 0, ran.stderr
    result = runner.invoke(app, ["report", *data])
    assert result.exit_code == 0, result.stderr
    lines = dict(line.split(None, 1) for line in result.output.splitlines())
    page, index = Path(lines["report"]), Path(lines["index"])
    html = page.read_text()
    assert page.parent == index.parent == (tmp_path / "data" / "reports").resolve()
    assert "<h3>air_passengers</h3>" in html and "seasonal naive" in html and "holdout MASE" in html
    images = [part.split('"', 1)[0] for part in html.split('<img src="')[1:]]
    assert len(images) == 2 and all((page.parent / src).resolve().is_file() for src in images)
    assert page.name in index.read_text()
    missing = runner.invoke(app, ["report", "--run-id", "nope", *data])
    assert missing.exit_code == 1 and "no run 'nope'" in missing.stderr


def _panel(tmp_path: Path, ids: list[str]) -> Path:
    import pandas as pd

    from seqcast.ingest import bundled_series_path

    air = pd.read_csv(bundled_series_path())
    frames = [pd.DataFrame({"series_id": sid, "period": air["Month"], "value": air["#Passengers"]}) for sid in ids]
    path = tmp_path / "panel.csv"
    pd.concat(frames).to_csv(path, index=False)
    return path


def test_a_series_whose_chart_cannot_be_drawn_is_its_own_problem(tmp_path: Path, data: list[str]) -> None:
    import pandas as pd

    panel = _panel(tmp_path, ["a$$b", "[/]", "ok"])
    huge = pd.DataFrame({"series_id": "huge", "period": pd.read_csv(panel)["period"].iloc[:144]})
    huge["value"] = [1e308 if i % 2 else -1e308 for i in range(len(huge))]
    huge.to_csv(panel, mode="a", header=False, index=False)
    args = ["run", "--orchestrator", "none", "--source", str(panel), "--model", "fake", "--statistical", "none", *data]
    for _ in range(2):  # the rerun too
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output + result.stderr
        assert "[/], a$$b, huge, ok" in result.output
    db = tmp_path / "data" / "seqcast.db"
    import sqlite3

    with sqlite3.connect(db) as conn:
        published = dict(conn.execute("SELECT series_id, COUNT(*) FROM latest_forecasts GROUP BY series_id"))
        statuses = conn.execute("SELECT status FROM pipeline_runs").fetchall()
    assert published == {"[/]": 12, "a$$b": 12, "huge": 12, "ok": 12} and statuses == [("completed",)] * 2
    charts = {p.name.split("-")[0] for p in (tmp_path / "data" / "plots").glob("*/*-forecast.png")}
    assert charts == {"a_b", "x", "ok"}  # the series whose chart failed has none; the others do
    shown = runner.invoke(app, ["forecasts", "--series", "[/]", *data])
    assert shown.exit_code == 0 and "[/]" in shown.output
    assert runner.invoke(app, ["metrics", *data]).exit_code == 0


def test_reading_commands_work_on_postgresql_and_on_a_read_only_copy(tmp_path: Path, postgres_server: str) -> None:
    from tests.conftest import fresh_pg_database, read_only_copy

    panel = _panel(tmp_path, ["north", "south"])
    folder = tmp_path / "data"
    run = ["run", "--orchestrator", "none", "--source", str(panel), "--model", "fake", "--statistical", "none"]
    with fresh_pg_database(postgres_server) as url:
        assert runner.invoke(app, [*run, "--data-dir", str(tmp_path / "pg"), "--db-url", url]).exit_code == 0
        for command in (["forecasts"], ["forecasts", "--series", "north"], ["metrics"], ["report"]):
            result = runner.invoke(app, [*command, "--data-dir", str(tmp_path / "pg"), "--db-url", url])
            assert result.exit_code == 0, (command, result.stderr)
        from seqcast import store

        store.dispose(url)
    assert runner.invoke(app, [*run, "--data-dir", str(folder)]).exit_code == 0
    with read_only_copy(folder, tmp_path / "copy") as copy:
        for command in (["forecasts"], ["metrics", "--series", "south"]):
            result = runner.invoke(app, [*command, "--data-dir", str(copy)])
            assert result.exit_code == 0 and "south" in result.output, (command, result.stderr)
        import os

        here = os.getcwd()
        os.chdir(tmp_path)
        try:
            result = runner.invoke(app, ["report", "--data-dir", str(copy)])
        finally:
            os.chdir(here)
        assert result.exit_code == 0, result.stderr
        assert "cannot be written" in result.output
        assert Path(result.output.strip().splitlines()[-1].split(None, 1)[1]).parent == tmp_path


@pytest.mark.parametrize("trouble", ["missing file", "corrupt database", "read-only database", "unreachable database"])
def test_failures_are_one_line_for_every_command(tmp_path: Path, trouble: str) -> None:
    import os
    import subprocess
    import sys

    folder = tmp_path / "data"
    folder.mkdir()
    src = tmp_path / "f.csv"
    src.write_text("series_id,period,value\na,2020-01,1\n")
    extra: list[str] = []
    commands = [["ingest", str(src)], ["run", "--source", str(src)], ["forecasts"]]
    if trouble == "missing file":
        commands = [["ingest", str(tmp_path / "missing.csv")], ["run", "--source", str(tmp_path / "missing.csv")]]
    elif trouble == "corrupt database":
        (folder / "seqcast.db").write_bytes(b"this is not a database" * 100)
    elif trouble == "read-only database":
        runner.invoke(app, ["ingest", str(src), "--data-dir", str(folder)])
        commands = commands[:2]
    else:
        extra = ["--db-url", "postgresql+psycopg://nobody@127.0.0.1:9/nothing"]
    env = {**os.environ, "PREFECT_API_URL": ""}
    for command in commands:
        args = [sys.executable, "-m", "seqcast", *command, "--data-dir", str(folder), *extra]
        if trouble == "read-only database":
            from tests.conftest import read_only_copy

            with read_only_copy(folder, tmp_path / f"ro-{command[0]}") as copy:
                args[args.index(str(folder))] = str(copy)
                done = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
        else:
            done = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode != 0, (command, done.stdout)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (command, done.stderr)


def test_rows_print_as_a_table_csv_or_json_and_accuracy_reads_the_ledger(tmp_path: Path, data: list[str]) -> None:
    import io
    import json

    import pandas as pd

    from seqcast.ingest import bundled_series_path

    air = pd.read_csv(bundled_series_path())
    head = tmp_path / "air.csv"
    air.iloc[:132].to_csv(head, index=False)
    ran = runner.invoke(app, [*FAKE_RUN[:-1], "--source", str(head), "--series-id", "air", *data])
    assert ran.exit_code == 0, ran.stderr

    table = runner.invoke(app, ["forecasts", *data])
    assert table.exit_code == 0 and "latest_forecasts (run " in table.output and "1960-01" in table.output
    csv = runner.invoke(app, ["forecasts", "--format", "csv", *data])
    frame = pd.read_csv(io.StringIO(csv.output))
    assert len(frame) == 12 and {"yhat_lower_outer", "published_at", "interval_level"} <= set(frame.columns)
    assert frame["period"].iloc[0] == "1960-01-01"
    metrics = json.loads(runner.invoke(app, ["metrics", "--format", "json", *data]).output)
    assert {m["model_kind"] for m in metrics} >= {"fake", "seasonal_naive"} and metrics[0]["holdout_start"]

    none_yet = runner.invoke(app, ["accuracy", *data])
    assert none_yet.exit_code == 1 and "no realised forecasts yet" in none_yet.stderr
    later = tmp_path / "later.csv"
    air.iloc[132:135].to_csv(later, index=False)
    assert runner.invoke(app, ["ingest", str(later), "--series-id", "air", *data]).exit_code == 0
    shown = runner.invoke(app, ["accuracy", *data])
    assert shown.exit_code == 0 and "champion_accuracy (last_12_months)" in shown.output
    rows = json.loads(runner.invoke(app, ["accuracy", "--every-model", "--format", "json", *data]).output)
    fake = next(r for r in rows if r["model_kind"] == "fake")
    assert fake["months"] == 3 and fake["window_name"] == "last_12_months" and 0 <= fake["coverage"] <= 1
    every = pd.read_csv(io.StringIO(runner.invoke(app, ["accuracy", "--window", "all_time", "--format", "csv",
                                                         *data]).output))  # fmt: skip
    assert list(every["series_id"]) == ["air"] and every["mase"].notna().all()


def test_run_prints_its_published_rows_as_csv_or_its_outcome_as_json(tmp_path: Path) -> None:
    import io
    import json
    import subprocess
    import sys

    import pandas as pd

    common = [sys.executable, "-m", "seqcast", "run", "--orchestrator", "none", "--model", "fake", "--statistical",
              "none", "--demo", "-q", "--data-dir", str(tmp_path / "data")]  # fmt: skip
    done = subprocess.run([*common, "--format", "json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)  # stdout holds the JSON alone
    assert outcome["trained"] == ["air_passengers"] and len(outcome["forecasts"]) == 12
    assert outcome["headline"]["series published"] == "1" and outcome["report"].endswith(".html")
    again = subprocess.run([*common, "--format", "csv"], capture_output=True, text=True, timeout=300)
    rows = pd.read_csv(io.StringIO(again.stdout))
    # Nothing changed: the rows that stand are the first run's, all of them.
    assert len(rows) == 12 and set(rows["run_id"]) == {outcome["run_id"]} and rows["yhat"].notna().all()
