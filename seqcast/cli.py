"""The `seqcast` command line. Human output only; every command exits non-zero with a one-line reason."""

from __future__ import annotations

import contextlib
import enum
import functools
import gc
import logging
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from seqcast.config import RunConfig, environment, load_config
from seqcast.errors import one_line
from seqcast.lock import RunInProgress, run_lock

app = typer.Typer(
    help="Monthly recurrent-network forecasts, retrained when data changes, written to SQL tables.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help shows its [brackets] as written
)
# No markup: series ids and file names are printed as they are (`[/]` is an id, not a style).
console = Console(soft_wrap=True, markup=False, highlight=False)
err = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)  # one-line errors stay on one line

DataDir = typer.Option(None, "--data-dir", help="Data folder [env SEQCAST_DATA_DIR; default ./seqcast-data].")
DbUrl = typer.Option(None, "--db-url", help="SQLAlchemy URL [env SEQCAST_DB_URL; default SQLite in the data folder].")


class Format(enum.StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


FormatOption = typer.Option(
    Format.table, "--format", help="table (for people), csv or json (every column, for programs) [default: table]."
)


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(Text.assemble(("error:", "bold red"), " ", " ".join(str(message).split())))
    raise typer.Exit(code)


class Terminated(KeyboardInterrupt):
    """SIGTERM (systemd, Kubernetes, a Prefect worker's cancellation), raised where the program is, like Ctrl-C,
    so that a run stops the same clean way: its training processes ended, its row `interrupted`."""


def _on_stop_signal(signum: int, frame: Any) -> None:
    """SIGINT or SIGTERM: the run unwinds (its processes stopped, its row marked), saying so in one line.

    What the unwinding makes the libraries log (a crash, the series cut short) stays off the terminal: the
    run's log on the Prefect server keeps it. A second SIGTERM is ignored; a second Ctrl-C interrupts the
    unwinding itself.
    """
    _quiet_terminal_logs()
    if signum == signal.SIGTERM:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated
    signal.signal(signal.SIGINT, signal.default_int_handler)
    raise KeyboardInterrupt


def _quiet_terminal_logs() -> None:
    """Drop every log record the terminal's handlers would print, until `_terminal_logs_back` (the other
    handlers, the Prefect server's among them, keep them)."""
    for handler in _terminal_handlers():
        handler.addFilter(_drop)


def _terminal_logs_back() -> None:
    for handler in _terminal_handlers():
        handler.removeFilter(_drop)


def _drop(record: logging.LogRecord) -> bool:
    return False


def _not_in_summary(record: logging.LogRecord) -> bool:
    """Whether the terminal prints a run's log record: not when the run's summary says the same in one line
    (a series not trained is a `skipped` line; the Prefect UI keeps its warning and its Failed task run)."""
    return not getattr(record, "in_summary", False) and not str(getattr(record, "task_run_name", "")).startswith(
        "not-trained-"
    )


@contextlib.contextmanager
def _terminal_filter(keep: Callable[[logging.LogRecord], bool]) -> Iterator[None]:
    """`keep` filters what the terminal's log handlers print for the duration."""
    handlers = [h for h in _terminal_handlers() if keep not in h.filters]
    for handler in handlers:
        handler.addFilter(keep)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(keep)


def _terminal_handlers() -> list[logging.Handler]:
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    return [
        handler
        for logger in loggers
        for handler in getattr(logger, "handlers", [])
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
    ]


@contextlib.contextmanager
def _stop_signals() -> Iterator[None]:
    """SIGINT and SIGTERM handled as `_on_stop_signal` says for the duration, then as before."""
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in before:
        signal.signal(signum, _on_stop_signal)
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
        _terminal_logs_back()


F = TypeVar("F", bound=Callable[..., None])
_STOPPED = "nothing of this run was published; a rerun finishes from what was done"


def command(fn: F) -> F:
    """A command whose every failure ends in one line on stderr and a non-zero exit status."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.exceptions.ClickException):
            raise
        except Terminated:
            _fail(f"stopped by SIGTERM: {_STOPPED}", 143)
        except KeyboardInterrupt:
            _fail(f"interrupted: {_STOPPED}", 130)
        except Exception as exc:
            _fail(f"{fn.__name__} failed: {one_line(exc)}")
        except BaseException as exc:
            # Within a flow run, Prefect turns SIGTERM into its own TerminationSignal (its handler then in place).
            if getattr(exc, "signal", None) == signal.SIGTERM:
                _fail(f"stopped by SIGTERM: {_STOPPED}", 143)
            raise

    app.command()(wrapper)
    return fn


def _config(**overrides: Any) -> RunConfig:
    try:
        return load_config(**overrides)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()]
        _fail(f"invalid settings: {'; '.join(problems)}")


def _statistical(names: list[str] | None) -> list[str] | None:
    """`--statistical` values: None when not given (the default applies), [] for 'none'."""
    if not names:
        return None
    return [] if names == ["none"] else names


def _prefect_env() -> None:
    """Settings Prefect must see before it is imported."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "seqcast")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    # A temporary server takes 25 s to answer on a busy machine; past Prefect's 20 s it would start a second.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


@command
def run(
    source: list[Path] = typer.Option(
        None,
        "--source",
        "-s",
        help="File to ingest (repeatable) [default: the inbox only].",
    ),
    model: list[str] = typer.Option(
        None, "--model", "-m", help="Network kind: rnn, lstm or gru (repeatable) [env SEQCAST_MODELS; default lstm]."
    ),
    preset: str = typer.Option(
        None,
        "--preset",
        help="'default' (one network across all series), or per series 'local', 'fast', 'tutorial' "
        "[env SEQCAST_PRESET; default default].",
    ),
    statistical: list[str] = typer.Option(
        None,
        "--statistical",
        help="Statistical candidate: ets, ces, theta, or 'none' (repeatable) "
        "[env SEQCAST_STATISTICAL; default ets, ces].",
    ),
    combine: bool = typer.Option(
        None,
        "--combination/--no-combination",
        help="Add the combination of the networks and statistical models [env SEQCAST_COMBINE; default yes].",
    ),
    horizon: int = typer.Option(None, "--horizon", help="Months to forecast [env SEQCAST_HORIZON; default 12]."),
    holdout: int = typer.Option(
        None, "--holdout", help="Months held out for validation, 0 for the horizon [env SEQCAST_HOLDOUT; default 0]."
    ),
    epochs: int = typer.Option(
        None, "--epochs", help="Epochs of a per-series network [env SEQCAST_EPOCHS; default: the preset's]."
    ),
    series_id: str = typer.Option(
        None, "--series-id", help="Series id for two-column files [env SEQCAST_SERIES_ID; default: the file stem]."
    ),
    fill_gaps: bool = typer.Option(
        None,
        "--fill-gaps/--no-fill-gaps",
        help="Interpolate missing months inside a series [env SEQCAST_FILL_GAPS; default no].",
    ),
    workers: int = typer.Option(None, "--workers", help="Training processes [env SEQCAST_WORKERS; default 2]."),
    chunk_size: int = typer.Option(
        None, "--chunk-size", help="Series per training task [env SEQCAST_CHUNK_SIZE; default 50]."
    ),
    global_steps: int = typer.Option(
        None, "--global-steps", help="Training steps of a global network [env SEQCAST_GLOBAL_STEPS; default 1500]."
    ),
    batch_training: bool = typer.Option(
        None,
        "--batched/--one-by-one",
        help="Train a chunk's per-series networks as one computation [env SEQCAST_BATCH_TRAINING; default batched].",
    ),
    orchestrator: str = typer.Option(
        "prefect",
        "--orchestrator",
        help="'prefect' (tasks, caching, UI) or 'none' (plain, in process) [default prefect].",
    ),
    task_runner: str = typer.Option(
        "threads",
        "--task-runner",
        help="'threads' (this process) or 'dask' (a Dask cluster; needs a Prefect server) [default threads].",
    ),
    dask_address: str = typer.Option(
        None,
        "--dask-address",
        help="Scheduler of an existing Dask cluster, e.g. tcp://10.0.0.5:8786 [default: a local one].",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the summary, no task logs [default: logs too]."),
    fmt: Format = typer.Option(
        Format.table,
        "--format",
        help="table: the summary for people; csv: the published forecast rows; json: the run's outcome with them "
        "[default: table].",
    ),
    demo: bool = typer.Option(
        None,
        "--demo/--no-demo",
        help="Ingest the bundled series into an empty store [env SEQCAST_USE_BUNDLED_DEMO; default: only in the "
        "default data folder].",
    ),
    data_dir: str = DataDir,
    db_url: str = DbUrl,
) -> None:
    """Run the monthly pipeline once: ingest, retrain what changed, validate, forecast, publish."""
    config = _config(
        sources=[str(s) for s in source] if source else None,
        models=model or None,
        preset=preset,
        horizon=horizon,
        holdout=holdout,
        epochs=epochs,
        series_id=series_id,
        fill_gaps=fill_gaps,
        workers=workers,
        chunk_size=chunk_size,
        batch_training=batch_training,
        global_steps=global_steps,
        statistical=_statistical(statistical),
        combine=combine,
        use_bundled_demo=demo,
        data_dir=data_dir,
        db_url=db_url,
    )
    for s in config.sources:
        if not Path(s).is_file():
            _fail(f"source file not found: {s}")
    if orchestrator not in ("prefect", "none"):
        _fail(f"unknown orchestrator {orchestrator!r}: use 'prefect' or 'none'")
    if task_runner not in ("threads", "dask"):
        _fail(f"unknown task runner {task_runner!r}: use 'threads' or 'dask'")
    if task_runner == "dask":  # said at once, before a temporary server would be started for nothing
        _prefect_env()
        from prefect.settings import PREFECT_API_URL

        from flows._prefect import DASK_NEEDS_SERVER

        if not PREFECT_API_URL.value():
            _fail(DASK_NEEDS_SERVER)
    _held.enter_context(_stop_signals())
    try:  # held from here to the end: of two runs started at once, one runs and the other says so
        _held.enter_context(run_lock(config))
    except RunInProgress as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot use the data folder {config.paths().root}: {one_line(exc)}")
    try:
        _run(config, orchestrator, task_runner, dask_address, quiet, fmt)
    finally:
        _held.close()


#: What `run` holds until it ends (the data folder's lock, the database URL in the environment).
_held = contextlib.ExitStack()


def _run(config: RunConfig, orchestrator: str, task_runner: str, dask_address: str | None, quiet: bool,
         fmt: Format = Format.table) -> None:  # fmt: skip
    from seqcast import store

    if config.db_url:
        # The URL (and any password in it) goes to the run in the environment, not in its settings, which the
        # Prefect UI shows as the flow run's parameters and the database stores with the run.
        _held.enter_context(environment(SEQCAST_DB_URL=config.db_url))
        config = config.model_copy(update={"db_url": None})

    try:  # the database answers and is at the newest schema, before anything starts
        store.engine(config.database_url())
    except Exception as exc:
        _fail(f"cannot use the database {store.redacted(config.database_url())}: {one_line(exc)}")
    if quiet:
        # Quiet the terminal only: the run's logs still reach the Prefect server and its UI.
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    _prefect_env()
    if config.workers > 1 and task_runner == "threads":  # (Dask trains in its own workers)
        from seqcast.processes import start_fork_server

        start_fork_server()  # its loading takes a core that waits for this process's imports anyway
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from seqcast import pipeline, progress

    bar = Progress(
        TextColumn("training"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    task_id = bar.add_task("train", total=None)
    progress.set_reporter(lambda n: bar.advance(task_id, n))
    progress.set_stop_listener(_quiet_terminal_logs)
    try:
        with bar:
            if orchestrator == "none":
                _freeze_heap()
                with _terminal_filter(_not_in_summary):
                    outcome = pipeline.run_pipeline(config)
            else:
                from flows._prefect import start_temporary_server
                from flows.monthly_forecast import run_flow

                start_temporary_server()
                _freeze_heap()
                with _terminal_filter(_not_in_summary):  # (Prefect's handlers exist once the flow is imported)
                    outcome = run_flow(config, task_runner, dask_address)
    except RunInProgress as exc:
        _fail(str(exc))
    except Exception as exc:
        _fail(f"run failed: {one_line(exc)}")
    finally:
        progress.set_reporter(None)
        progress.set_stop_listener(None)
    if fmt is Format.table:
        _print_outcome(outcome)
    else:
        _emit_outcome(outcome, fmt, config.database_url())
    if not outcome.trained and not outcome.reused and not outcome.skipped and not outcome.batches:
        (console if fmt is Format.table else err).print(
            f"hint      nothing to forecast yet: drop CSV or Parquet files into {config.paths().inbox}, "
            "or give --source FILE (--demo ingests the bundled series)"
        )
    _freeze_heap()  # what the run left is freed by the process's exit, not by a last collection
    if outcome_rejected := [b for b in outcome.batches if b.status in ("rejected", "refused")]:
        _fail(f"{len(outcome_rejected)} file(s) rejected; first: {outcome_rejected[0].error}", code=2)


def _print_outcome(outcome: Any) -> None:
    from seqcast.report import SHOWN_NAMES, champion_counts, forecast_table, ingest_lines, metrics_table, names

    console.rule(f"seqcast run {outcome.run_id}")
    for line in ingest_lines(outcome):
        console.print(f"ingested  {line}")
    console.print(f"trained   {names(outcome.trained)}" + ("  (new or revised data)" if outcome.trained else ""))
    console.print(
        f"reused    {names(outcome.reused)}"
        + ("  (no new data: stored models reused, nothing retrained)" if outcome.reused else "")
    )
    for item in outcome.skipped[:SHOWN_NAMES]:
        console.print(f"skipped   {item.series_id}: {item.reason}")
    if len(outcome.skipped) > SHOWN_NAMES:
        console.print(f"skipped   ... and {len(outcome.skipped) - SHOWN_NAMES} more (table series_status)")
    for item in outcome.notes[:SHOWN_NAMES]:
        console.print(f"note      {item.series_id}: {item.reason}")
    for series_id, reason in list(outcome.degraded.items())[:SHOWN_NAMES]:
        console.print(f"degraded  {series_id}: {reason.removeprefix('degraded: ')}; retrained")
    if len(outcome.degraded) > SHOWN_NAMES:
        console.print(f"degraded  ... and {len(outcome.degraded) - SHOWN_NAMES} more (series_status.degraded)")
    if outcome.unchanged:
        stands = sorted(set(outcome.unchanged.values()))
        console.print(
            f"unchanged {len(outcome.unchanged)} series' forecasts: the rows of run {', '.join(stands[:3])}"
            + (" ..." if len(stands) > 3 else "")
            + " stand (nothing copied)"
        )
    if outcome.champions:
        console.print(f"champions {champion_counts(outcome)}")
    metric_rows = metrics_table(outcome)
    if metric_rows:
        _print_table(
            f"Holdout {metric_rows[0]['holdout']} (champion marked)",
            metric_rows,
            ["series_id", "model_kind", "mape_pct", "smape_pct", "mase", "champion"],
            rest="seqcast metrics, or the view latest_metrics",
        )
    _print_table(
        "Forecast (champion per series)",
        forecast_table(outcome),
        ["series_id", "model_kind", "period", "yhat", "yhat_lower", "yhat_upper"],
        rest="seqcast forecasts, or the view latest_forecasts",
    )
    console.print(f"database  {outcome.database}")
    if outcome.plots:
        console.print(f"plots     {Path(outcome.plots[0]).parent}")


def _emit_outcome(outcome: Any, fmt: Format, url: Any) -> None:
    """The run for programs: its published forecast rows, every one (csv), or its outcome with them (json)."""
    import json
    import sys

    from seqcast import store

    engine = store.reader(url)
    try:
        rows = store.run_page_frames(engine, outcome.run_id)["forecasts"]
    finally:
        engine.dispose()
    if fmt is Format.csv:
        _emit(rows, fmt, "", [])
        return
    document = {
        "run_id": outcome.run_id,
        "new_observations": outcome.new_observations,
        "revised_observations": outcome.revised_observations,
        "trained": list(outcome.trained),
        "reused": list(outcome.reused),
        "not_published": [{"series_id": s.series_id, "reason": s.reason} for s in outcome.skipped],
        "degraded": outcome.degraded,
        "unchanged": outcome.unchanged,
        "champions": outcome.champions,
        "headline": dict(outcome.headline),
        "report": outcome.report,
        "database": outcome.database,
        "forecasts": json.loads(rows.to_json(orient="records", date_format="iso")),
    }
    sys.stdout.write(json.dumps(document, indent=1) + "\n")


def _freeze_heap() -> None:
    """Move every object alive now to the garbage collector's permanent generation.

    Most of a run's objects are the imported modules of torch, pandas and Prefect: never garbage, yet every full
    collection walked them, and so did the last one at exit. Frozen, they are skipped.
    """
    gc.freeze()


#: Rows of a table a run prints on the terminal; the rest are a command (and a view) away.
PRINTED_ROWS = 60


def _print_table(title: str, rows: list[dict[str, Any]], columns: list[str] | None = None, rest: str = "") -> None:
    """Print `rows` as a table; with `rest` (where to find them all), only the first PRINTED_ROWS, then a line
    saying how many there are and where."""
    if not rows:
        return
    columns = columns or list(rows[0])
    table = Table(title=title, title_justify="left")
    for column in columns:
        left = column in ("series_id", "model_kind")
        table.add_column(column, justify="left" if left else "right", overflow="fold")
    for row in rows[:PRINTED_ROWS] if rest else rows:
        table.add_row(*[str(row[c]) for c in columns])
    console.print(table)
    if rest and len(rows) > PRINTED_ROWS:
        console.print(f"          first {PRINTED_ROWS} of {len(rows)} rows; all of them: {rest}")


@command
def ingest(
    files: list[Path] = typer.Argument(..., help="CSV or Parquet files."),
    series_id: str = typer.Option(
        None, "--series-id", help="Series id for two-column files [env SEQCAST_SERIES_ID; default: the file stem]."
    ),
    data_dir: str = DataDir,
    db_url: str = DbUrl,
) -> None:
    """Ingest files now (archived, validated row by row, revisions recorded); no training."""
    from seqcast import ingest as ingest_mod
    from seqcast import store
    from seqcast.report import batch_line

    config = _config(data_dir=data_dir, db_url=db_url)
    for file in files:
        if not file.exists() and not file.is_symlink():
            _fail(f"{file.name}: file not found ({file})")
    paths = config.paths().create()
    reports = ingest_mod.ingest_files(store.engine(config.database_url()), paths, files, series_id=series_id)
    problems = [r for r in reports if r.status not in ("applied", "duplicate")]
    for report in reports:
        if report.status in ("applied", "duplicate"):
            console.print(batch_line(report))
        elif len(problems) > 1:  # (a single one is the error line)
            err.print(batch_line(report))
    if problems:
        first = problems[0].error or problems[0].source
        _fail(first if len(problems) == 1 else f"{len(problems)} of {len(reports)} files not ingested; first: {first}")


def _reader(data_dir: str | None, db_url: str | None) -> Any:
    """A read-only engine on the configured database (works on a read-only copy of a data folder)."""
    from seqcast import store

    config = _config(data_dir=data_dir, db_url=db_url)
    if config.db_url is None and not config.paths().database.exists():
        _fail(f"no database at {config.paths().database}: run `seqcast run` first")
    return store.reader(config.database_url())


def _emit(frame: Any, fmt: Format, title: str, shown: list[str]) -> None:
    """Rows as a table of the `shown` columns for people, or every column as CSV or JSON on stdout."""
    import datetime as dt
    import sys

    if fmt is not Format.table:  # dates and times as ISO text, whatever the database returned them as
        frame = frame.map(lambda v: v.isoformat(sep=" ") if isinstance(v, dt.datetime) else
                          v.isoformat() if isinstance(v, dt.date) else v)  # fmt: skip
    if fmt is Format.csv:
        frame.to_csv(sys.stdout, index=False, date_format="%Y-%m-%d")
        return
    if fmt is Format.json:
        sys.stdout.write(frame.to_json(orient="records", date_format="iso", indent=1) + "\n")
        return
    rows = [{k: _human(k, r[k]) for k in shown} for r in frame.to_dict("records")]
    _print_table(title, rows)


def _query_view(view: str, series: str | None, data_dir: str | None, db_url: str | None, fmt: Format) -> None:
    from seqcast import store

    engine = _reader(data_dir, db_url)
    try:
        frame = store.latest(engine, view, series)
    finally:
        engine.dispose()
    if frame.empty:
        _fail(f"no rows in {view}" + (f" for series {series!r}" if series else ""))
    shown = {
        "latest_forecasts": ["series_id", "model_kind", "period", "step", "yhat", "yhat_lower", "yhat_upper"],
        "latest_metrics": ["series_id", "model_kind", "mape", "smape", "mase", "is_champion"],
    }[view]
    runs = sorted(set(frame["run_id"]))
    _emit(frame, fmt, f"{view} (run {runs[-1]})" if len(runs) == 1 else f"{view} ({len(runs)} runs)", shown)


def _human(column: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if column in ("period", "first_period", "last_period"):
        return str(value)[:7]
    if column == "is_champion":
        return "yes" if value else ""
    if column.startswith("coverage"):
        return f"{value:.0%}"
    if isinstance(value, float):
        return f"{value:.2f}" if column != "mase" else f"{value:.3f}"
    return str(value)


@command
def forecasts(
    series: str = typer.Option(None, "--series", help="Only this series [default: all]."),
    fmt: Format = FormatOption,
    data_dir: str = DataDir,
    db_url: str = DbUrl,
) -> None:
    """Print the latest published forecasts (the `latest_forecasts` view)."""
    _query_view("latest_forecasts", series, data_dir, db_url, fmt)


@command
def metrics(
    series: str = typer.Option(None, "--series", help="Only this series [default: all]."),
    fmt: Format = FormatOption,
    data_dir: str = DataDir,
    db_url: str = DbUrl,
) -> None:
    """Print the latest holdout metrics (the `latest_metrics` view)."""
    _query_view("latest_metrics", series, data_dir, db_url, fmt)


class Window(enum.StrEnum):
    last_12_months = "last_12_months"
    all_time = "all_time"


@command
def accuracy(
    series: str = typer.Option(None, "--series", help="Only this series [default: all]."),
    window: Window = typer.Option(
        Window.last_12_months, "--window", help="The series' last 12 realised months, or all of them."
    ),
    every_model: bool = typer.Option(
        False, "--every-model", help="Every model a run scored [default: the published forecasts only]."
    ),
    fmt: Format = FormatOption,
    data_dir: str = DataDir,
    db_url: str = DbUrl,
) -> None:
    """Print how published forecasts did once their months were observed (the forecast ledger's views
    `champion_accuracy`, or `forecast_accuracy` with --every-model)."""
    from seqcast import store

    view = "forecast_accuracy" if every_model else "champion_accuracy"
    engine = _reader(data_dir, db_url)
    try:
        frame = store.select_rows(engine, view, series, {"window_name": window.value})
    finally:
        engine.dispose()
    if frame.empty:
        _fail(
            f"no realised forecasts yet{f' for series {series!r}' if series else ''}: the ledger fills as actuals "
            "arrive for months that runs forecast"
        )
    frame = frame.sort_values([c for c in ("series_id", "model_kind") if c in frame]).reset_index(drop=True)
    shown = ["series_id", *(["model_kind"] if every_model else []), "months", "first_period", "last_period", "mae",
             "mase", "smape", "bias", "coverage", "coverage_outer"]  # fmt: skip
    _emit(frame, fmt, f"{view} ({window.value})", shown)


@command
def backtest(
    source: Path = typer.Option(None, "--source", "-s", help="File to backtest [default: the stored observations]."),
    model: list[str] = typer.Option(
        None, "--model", "-m", help="Network kind: rnn, lstm or gru (repeatable) [env SEQCAST_MODELS; default lstm]."
    ),
    preset: str = typer.Option(
        None, "--preset", help="'default', 'local', 'fast' or 'tutorial' [env SEQCAST_PRESET; default default]."
    ),
    statistical: list[str] = typer.Option(
        None,
        "--statistical",
        help="ets, ces, theta, or 'none' (repeatable) [env SEQCAST_STATISTICAL; default ets, ces].",
    ),
    horizon: int = typer.Option(12, "--horizon", help="Months per window [default 12]."),
    windows: int = typer.Option(
        3, "--windows", help="Rolling origins: n - windows*horizon, ..., n - horizon [default 3]."
    ),
    epochs: int = typer.Option(
        None, "--epochs", help="Epochs of a per-series network [env SEQCAST_EPOCHS; default: the preset's]."
    ),
    series_id: str = typer.Option(
        None, "--series-id", help="Series id for two-column files [env SEQCAST_SERIES_ID; default: the file stem]."
    ),
    output: Path = typer.Option(
        None, "--output", "-o", help="CSV: one row per series, model, origin, step [default: none]."
    ),
    workers: int = typer.Option(None, "--workers", help="Training processes [env SEQCAST_WORKERS; default 2]."),
    fmt: Format = FormatOption,
    data_dir: str = DataDir,
    db_url: str = DbUrl,
) -> None:
    """Rolling-origin evaluation: the monthly procedure replayed at each origin, every candidate and the champion."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from seqcast import backtest as bt
    from seqcast import store
    from seqcast.ingest import IngestError, parse_file

    config = _config(
        models=model or None,
        preset=preset,
        statistical=_statistical(statistical),
        horizon=horizon,
        epochs=epochs,
        workers=workers,
        data_dir=data_dir,
        db_url=db_url,
    )
    engine = store.open_engine(config.database_url()) if source is None or config.db_url else None
    if source is not None:
        try:
            frame = parse_file(source, series_id=series_id).rows
        except IngestError as exc:
            _fail(str(exc))
    else:
        assert engine is not None
        frame = store.load_observations(engine)
        if frame.empty:
            _fail("no observations: give --source FILE or ingest first")
    bar = Progress(
        TextColumn("backtest"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True
    )
    with bar:
        task_id = bar.add_task("series", total=frame["series_id"].nunique())
        forecasts, skipped = bt.run_backtest(
            frame, config, horizon, windows, progress=lambda n: bar.advance(task_id, n / windows)
        )
    for item in skipped:
        (console if fmt is Format.table else err).print(f"skipped   {item['series_id']}: {item['reason']}")
    if forecasts.empty:
        _fail("no series long enough to backtest")
    metrics = bt.window_metrics(forecasts, frame, config.interval_levels)
    backtest_id = f"{store.utcnow():%Y%m%dT%H%M%SZ}-bt"
    engine = engine or store.open_engine(config.database_url())
    try:
        store.write_backtest(engine, backtest_id, metrics, horizon, config.interval_levels[0])
    finally:
        engine.dispose()
    if output:
        bt.write_csv(forecasts, output)
    summary = bt.summarise(metrics).reset_index()
    if fmt is Format.table:
        rows = [
            {str(k): (f"{v:.3f}" if isinstance(v, float) else str(v)) for k, v in r.items()}
            for r in summary.to_dict("records")
        ]
        _print_table(f"Backtest {backtest_id}: {windows} origins x {horizon} months", rows)
    else:
        _emit(summary, fmt, "", [])
    # (With csv or json, stdout holds the rows alone.)
    (console if fmt is Format.table else err).print(
        f"stored    backtest_metrics (backtest_id {backtest_id})" + (f"; CSV {output}" if output else ""),
        highlight=False,
    )


@command
def report(
    run_id: str = typer.Option(None, "--run-id", help="A completed run [default: the latest]."),
    data_dir: str = DataDir,
    db_url: str = DbUrl,
) -> None:
    """Write a run's page and the index across runs (from the published tables) into the data folder's reports/.

    In a read-only data folder the pages are written to the current folder instead.
    """
    from seqcast import report as pages
    from seqcast import store

    config = _config(data_dir=data_dir, db_url=db_url)
    engine = _reader(data_dir, db_url)
    try:
        try:
            chosen = store.run_outcome(engine, run_id, "", "").run_id if run_id is None else run_id
            frames = store.run_page_frames(engine, chosen)
        except LookupError as exc:
            _fail(str(exc))
        overview = store.runs_overview(engine, pages.INDEX_RUNS)
    finally:
        engine.dispose()
    database = store.redacted(config.database_url())
    plots = config.paths().plots.resolve()
    level = f"{config.interval_levels[0]:.0%}"

    def write(folder: Path) -> Path:
        page = pages.write_run_page(frames, folder, plots, database, config.validation_months)
        pages.write_index(overview, folder, database, level)
        return page

    try:
        page = write(config.paths().reports.resolve())
    except OSError:
        page = write(Path.cwd())
        console.print("note      the data folder cannot be written: the pages are in the current folder")
    console.print(f"report    {page}")
    console.print(f"index     {page.parent / 'index.html'}")


@command
def serve(
    cron: str = typer.Option(None, "--cron", help="Cron schedule [default 0 6 1 * *: 06:00 on the 1st]."),
    timezone: str = typer.Option(None, "--timezone", help="Timezone of the schedule [default UTC]."),
    model: list[str] = typer.Option(
        None, "--model", "-m", help="Network kind: rnn, lstm or gru (repeatable) [env SEQCAST_MODELS; default lstm]."
    ),
    horizon: int = typer.Option(None, "--horizon", help="Months to forecast [env SEQCAST_HORIZON; default 12]."),
    holdout: int = typer.Option(
        None, "--holdout", help="Months held out for validation, 0 for the horizon [env SEQCAST_HOLDOUT; default 0]."
    ),
    data_dir: str = DataDir,
    db_url: str = DbUrl,
) -> None:
    """Run the monthly schedule on this machine (needs a Prefect server: `prefect server start`)."""
    from seqcast.config import DEFAULT_CRON, DEFAULT_TIMEZONE

    config = _config(models=model or None, horizon=horizon, holdout=holdout, data_dir=data_dir, db_url=db_url)

    # A deployment runs later, elsewhere: pin the data folder to an absolute path now.
    config = config.model_copy(update={"data_dir": str(Path(config.data_dir).resolve())})
    _prefect_env()
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        _fail(
            "serving a schedule needs a running Prefect server: start one with `prefect server start`, then "
            "`export PREFECT_API_URL=http://127.0.0.1:4200/api`"
        )
    from flows.monthly_forecast import serve_monthly

    # The served runs are this process's children: the URL (and its password) reaches them in the environment,
    # never in the deployment's parameters, which the UI shows.
    url = {"SEQCAST_DB_URL": config.db_url} if config.db_url else {}
    with environment(**url):
        serve_monthly(config.model_copy(update={"db_url": None}), cron or DEFAULT_CRON, timezone or DEFAULT_TIMEZONE)


@command
def automation(
    webhook_block: str = typer.Option(
        ..., "--webhook-block", help="Name of the Prefect Webhook block to call (its URL stays in the block)."
    ),
) -> None:
    """Create the sample automation on the Prefect server (PREFECT_API_URL): when a run finds a series degraded,
    call the webhook (deployments/automations/series-degraded.yaml). An automation of the same name is replaced."""
    _prefect_env()
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        _fail("automations live on a Prefect server: set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)")
    from flows.automations import create_degraded_automation

    try:
        created = create_degraded_automation(webhook_block)
    except ValueError as exc:
        _fail(str(exc))
    console.print(f"automation seqcast-series-degraded ({created}): degraded series call webhook {webhook_block}")


@command
def prune(
    keep_runs: int = typer.Option(..., "--keep-runs", min=1, help="Completed runs to keep (the latest)."),
    data_dir: str = DataDir,
    db_url: str = DbUrl,
) -> None:
    """Remove old runs' charts and pages, model files no kept run uses, and cached task results no kept run
    wrote or read. Received files, observations, the forecast ledger and every table are kept."""
    from seqcast import prune as pruning
    from seqcast import report as pages
    from seqcast import store

    config = _config(data_dir=data_dir, db_url=db_url)
    if config.db_url is None and not config.paths().database.exists():
        _fail(f"no database at {config.paths().database}: nothing to prune")
    try:
        with run_lock(config):
            engine = store.engine(config.database_url())
            done = pruning.prune(engine, config.paths(), keep_runs)
            reports = config.paths().reports.resolve()
            if reports.is_dir():  # the index no longer links the removed pages
                overview = store.runs_overview(engine, pages.INDEX_RUNS)
                level = f"{config.interval_levels[0]:.0%}"
                pages.write_index(overview, reports, store.redacted(config.database_url()), level)
    except RunInProgress as exc:
        _fail(str(exc))
    console.print(
        f"pruned    {done.charts} run(s)' charts, {done.pages} page(s), {done.models} model file(s), "
        f"{done.task_results} cached task result(s); "
        f"{done.bytes_freed / 2**20:.1f} MiB freed; kept runs {', '.join(done.kept_runs) or 'none'}"
    )
