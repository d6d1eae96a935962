"""The monthly pipeline's stages as plain functions of records, each with what a runner needs to cache it.

    ingest -> snapshot -> validate, train (per chunk) [-> global] -> forecast (per chunk) -> charts + publish
    -> report

A stage takes settings, ids and records and returns records (`seqcast.records`); models and frames stay on
disk. Each `Stage` says how its result may be reused: by content (`key` gives the same string exactly when
the result would be the same, and only while the files it left are still there), within one run (charts,
publish, report: a retried or resumed run reuses them), or never; and whether it touches I/O (retried).
`seqcast.pipeline` composes them; a runner (plain, Prefect, Dask) executes them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from seqcast import artifacts, ingest, lake, ledger, plots, progress, publish, report, store, workers
from seqcast import forecast as fc
from seqcast._files import safe_name
from seqcast.config import MODEL_CODE_VERSION, RunConfig
from seqcast.errors import one_line
from seqcast.records import (
    Calibration,
    Charts,
    Failure,
    Fit,
    Forecast,
    GlobalResult,
    Ingested,
    ModelRecord,
    RunOutcome,
    SeriesRef,
    Skip,
    Snapshot,
    Validation,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    """A stage and how a runner may treat it.

    Attributes:
        reuse: "content" (reused when `key` repeats), "run" (reused within one run, keyed by its run id) or
            "never".
        key: the key of a call (same arguments as `fn`): for "content" stages its content key, None meaning do
            not reuse; for "run" stages the run id.
        io: the stage reads or writes files or the database, so a failure may be transient: retry it.
        leaves_files: its result points at files it left (lake snapshots, model artifacts): a stored result is
            reused only while `files_sound(files_left(result))`.
    """

    name: str
    fn: Callable[..., Any]
    reuse: Literal["content", "run", "never"]
    key: Callable[..., str | None] | None = None
    io: bool = True
    leaves_files: bool = False

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


def stage_key(stage: str, config: RunConfig, refs: Sequence[SeriesRef] | None = None, extra: str = "") -> str:
    """Content key of a stage's result: stage, model code version, the settings that shape it, and the data
    hashes of the series it covers. Equal keys mean equal results."""
    parts = [
        stage,
        MODEL_CODE_VERSION,
        str(config.paths().root.resolve()),
        ",".join(c.config_hash() for c in config.model_configs()),
        ",".join(c.config_hash() for c in config.global_configs()) + f"-{config.global_steps}",
        f"h{config.horizon}-ho{config.validation_months}-l{config.interval_levels}-f{config.fill_gaps}",
        f"c{config.combine}-m{config.champion_margin}",
        extra,
    ]
    if refs is not None:
        parts.extend(f"{r.series_id}={r.model_key}" for r in refs)
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
    return f"{stage}-{digest}"


def files_left(result: Any) -> list[tuple[Path, str | None]]:
    """The files a stage's result points at, each with the sha256 it was written with where one is recorded:
    series snapshots and model artifacts, anywhere in the result."""
    found: list[tuple[Path, str | None]] = []

    def visit(value: Any) -> None:
        if isinstance(value, SeriesRef):
            found.append((Path(value.path), None))
        elif isinstance(value, ModelRecord):
            found.append((Path(value.artifact_path), value.artifact_sha256 or None))
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                visit(getattr(value, f.name))

    visit(result)
    return found


def files_sound(files: Sequence[tuple[Path, str | None]]) -> bool:
    """Whether every file is there (and, where a hash is recorded, unchanged since it was written)."""
    checked: set[Path] = set()
    for path, sha in files:
        if path in checked:
            continue
        checked.add(path)
        try:
            if not path.is_file() or (sha is not None and artifacts.file_sha256(path) != sha):
                return False
        except OSError:
            return False
    return True


# ---------------------------------------------------------------------------------------------- ingest


def pending_files(config: RunConfig) -> list[str]:
    """The files a run would ingest now: its sources, then the inbox."""
    return [str(p) for p in [*map(Path, config.sources), *ingest.inbox_files(config.paths())]]


def data_version(config: RunConfig) -> str:
    """A key that changes whenever the stored observations change (for caching the snapshot)."""
    store_id, version = store.store_identity(store.engine(config.database_url()))
    return f"{store_id}:{version}"


def ingest_stage(config: RunConfig) -> Ingested:
    """Ingest `sources` and every inbox file; the bundled series when the store never received anything.

    Raises IngestFailure when a file could not be ingested for a reason other than its content (it is still
    where it was): a retry, or the next run, tries it again.
    """
    paths = config.paths().create()
    engine = store.engine(config.database_url())
    sources = [Path(s) for s in config.sources] + ingest.inbox_files(paths)
    # The demo only for a store that never received anything (a failed file is not "nothing").
    if not sources and config.demo_allowed and store.count_batches(engine) == 0:
        sources = [ingest.bundled_series_path()]
    reports = ingest.ingest_files(engine, paths, sources, series_id=config.series_id)
    failed = [r for r in reports if r.status == "failed"]
    if failed:
        first = failed[0].error or failed[0].source
        raise ingest.IngestFailure(f"{len(failed)} file(s) not ingested; first: {first}")
    store_id, version = store.store_identity(engine)
    return Ingested(
        batches=tuple(reports),
        new_observations=sum(r.rows_inserted for r in reports),
        revised_observations=sum(r.rows_updated for r in reports),
        data_version=f"{store_id}:{version}",
    )


def _ingest_key(config: RunConfig) -> str | None:
    if pending_files(config):
        return None  # received files are always recorded (the library tells re-sent rows from new ones)
    return stage_key("ingest", config, extra=data_version(config))


# --------------------------------------------------------------------------------------------- snapshot


def _fill_gaps(frame: pd.DataFrame) -> pd.DataFrame:
    """Insert missing interior months per series, linearly interpolated and marked is_filled."""
    out = []
    for series_id, group in frame.groupby("series_id", sort=False):
        full = pd.date_range(group["period"].min(), group["period"].max(), freq="MS").astype("datetime64[us]")
        if len(full) == len(group):
            out.append(group)
            continue
        g = group.set_index("period").reindex(full)
        g.index.name = "period"
        g["series_id"] = series_id
        g["is_filled"] = g["is_filled"].isna() | g["is_filled"].astype("boolean").fillna(False)
        g["value"] = g["value"].interpolate(method="linear")
        out.append(g.reset_index()[frame.columns])
    return pd.concat(out, ignore_index=True) if out else frame


def snapshot_stage(config: RunConfig, version: str) -> Snapshot:
    """Write the lake's Parquet snapshots (as of data `version`) and decide which series can be trained."""
    paths = config.paths().create()
    frame = store.load_observations(store.engine(config.database_url()))
    filled: dict[str, int] = {}
    if config.fill_gaps and len(frame):
        before = frame.groupby("series_id").size()
        frame = _fill_gaps(frame)
        grown = frame.groupby("series_id").size() - before
        filled = {str(k): int(v) for k, v in grown.items() if v > 0}
    refs = lake.snapshot(frame, paths.lake)
    engine = store.engine(config.database_url())
    # (The ledger is settled by ingest, as the months arrive.)
    degraded = ledger.degraded_series(engine, config.degradation_factor, config.degradation_months)
    eligible, skipped = [], []
    for ref in refs:
        reason = fc.ineligible_reason(ref)
        if reason:
            skipped.append(Skip(ref.series_id, reason))
            log.warning("series %r not trained: %s", ref.series_id, reason, extra={"in_summary": True})
        elif ref.series_id in degraded:
            d = degraded[ref.series_id]
            log.warning("series %r %s: retrained", ref.series_id, d.reason, extra={"in_summary": True})
            # The mark changes with the evidence: retrained once per new judgement, not at every run.
            evidence = hashlib.sha256(f"{d.outcomes}:{d.realised_mase!r}:{d.reason}".encode()).hexdigest()[:8]
            eligible.append(dataclasses.replace(ref, retrain=f"degraded-{evidence}"))  # (short: keys fit 64 chars)
        else:
            eligible.append(ref)
    marked = {r.series_id: degraded[r.series_id].reason for r in eligible if r.retrain}
    return Snapshot(tuple(eligible), tuple(skipped), filled, marked)


def _snapshot_key(config: RunConfig, version: str) -> str:
    # (The ledger, which degradation is judged on, changes only with the observations.)
    return stage_key("snapshot", config, extra=f"{version}-d{config.degradation_factor}-{config.degradation_months}")


# ------------------------------------------------------------------------------------------ per chunk


def _per_series(refs: Sequence[SeriesRef], stage: str, work: Callable[[SeriesRef], Any], advance: bool = True
                ) -> list[Any]:  # fmt: skip
    """Run `work` on each series; a failure is recorded for that series and the others go on."""
    results: list[Any] = []
    for ref in refs:
        try:
            results.append(work(ref))
        except Exception as exc:  # one bad series must not sink the run
            log.error("series %r failed: %s", ref.series_id, one_line(exc))
            results.append(Failure(ref.series_id, stage, one_line(exc)))
        if advance:
            progress.advance(1)
    return results


def _chunk(refs: Sequence[SeriesRef], stage: str, many: Callable[[Sequence[SeriesRef], bool], list[Any]],
           batched: bool) -> list[Any]:  # fmt: skip
    """Run `many` on the whole chunk (batched); if that fails, one series at a time so that only the
    failing series are lost."""
    if batched and len(refs) > 1:
        try:
            results = many(refs, True)
        except Exception as exc:
            log.warning("batched training of %d series failed (%s); training them one by one", len(refs), exc)
        else:
            progress.advance(len(refs))
            return results
    return _per_series(refs, stage, lambda ref: many([ref], False)[0])


def validate_chunk(refs: Sequence[SeriesRef], config: RunConfig) -> list[Validation | Failure]:
    """Holdout validation of every per-series kind (baselines included) for a chunk of series."""
    configs, models_dir, holdout = config.model_configs(), config.paths().models, config.validation_months

    def many(chunk: Sequence[SeriesRef], batched: bool) -> list[Any]:
        return workers.call(fc.validate_many, list(chunk), configs, holdout, models_dir, batched)

    return _chunk(refs, "validate", many, config.batch_training)


def train_chunk(refs: Sequence[SeriesRef], config: RunConfig) -> list[Fit | Failure]:
    """Final fit on all data of every per-series kind for a chunk of series (stored fits are reused), with
    forecasts."""
    configs, models_dir = config.model_configs(), config.paths().models

    def many(chunk: Sequence[SeriesRef], batched: bool) -> list[Any]:
        return workers.call(fc.train_many, list(chunk), configs, models_dir, config.horizon, batched)

    return _chunk(refs, "train", many, config.batch_training)


def _models_key(stage: str) -> Callable[..., str]:
    def key(refs: Sequence[SeriesRef], config: RunConfig, *_: Any) -> str:
        return stage_key(stage, config, refs)

    return key


def global_stage(refs: Sequence[SeriesRef], config: RunConfig) -> list[GlobalResult]:
    """Every global network's holdout scores and forecasts for every series (none with a local preset)."""
    configs = config.global_configs()
    if not configs or not refs:
        return []
    return fc.global_candidates(
        refs, configs, config.validation_months, config.horizon, config.paths().models, config.global_steps
    )


def _global_key(refs: Sequence[SeriesRef], config: RunConfig) -> str:
    return stage_key("global", config, refs)


def forecast_chunk(
    refs: Sequence[SeriesRef],
    validations: Sequence[Any],
    fits: Sequence[Any],
    config: RunConfig,
    calibration: Calibration,
) -> list[Forecast | Failure]:
    """The published forecasts (every candidate, champion marked, two intervals) for a chunk of series."""
    by_val = {v.series_id: v for v in validations if isinstance(v, Validation)}
    by_fit = {f.series_id: f for f in fits if isinstance(f, Fit)}
    ready = [r for r in refs if r.series_id in by_val and r.series_id in by_fit]

    def work(ref: SeriesRef) -> Forecast:
        return fc.forecast_series(
            ref, by_val[ref.series_id], by_fit[ref.series_id], config.horizon, calibration, config.champion_margin
        )

    return _per_series(ready, "forecast", work, advance=False)


def _forecast_key(refs: Sequence[SeriesRef], validations: Any, fits: Any, config: RunConfig, *_: Any) -> str:
    return stage_key("forecast", config, refs)


# ------------------------------------------------------------------------------------ publish and after


def publish_stage(
    run_id: str,
    config: RunConfig,
    ingested: Ingested,
    snap: Snapshot,
    validations: Sequence[Any],
    fits: Sequence[Any],
    forecasts: Sequence[Any],
) -> RunOutcome:
    """Write the run's models, metrics, forecasts and run row in one transaction; return the outcome."""
    engine = store.engine(config.database_url())
    model_ids = [m.model_id for m in publish.model_records(validations, fits)]
    rows, outcome = publish.run_rows(
        run_id,
        ingested,
        snap,
        validations,
        fits,
        forecasts,
        known_models=store.known_model_ids(engine, model_ids),
        now=store.utcnow(),
        database=store.redacted(config.database_url()),
        data_dir=str(config.paths().root),
        previous=store.latest_published(engine, other_than=run_id),
    )
    store.write_run(engine, rows)
    return outcome


def charts_stage(run_id: str, config: RunConfig, validations: Sequence[Any], fits: Sequence[Any],
                 forecasts: Sequence[Any]) -> Charts:  # fmt: skip
    """Plot the first `max_plots` published series (by id): loss curves; history, holdout and forecast.

    Needs the stages' results, not the published tables, so it can run while `publish_stage` writes. A series
    whose charts cannot be drawn is noted; the others are drawn.
    """
    published = publish.published(validations, fits, forecasts)
    shown = sorted(published)[: config.max_plots]
    plots = config.paths().plots.resolve()
    folder = plots / run_id
    engine = store.engine(config.database_url())
    # A series whose forecast did not change keeps the charts of the run whose rows stand (nothing is redrawn).
    previous = store.latest_published(engine, other_than=run_id)
    stands = publish.unchanged(validations, forecasts, previous)
    kept: list[str] = []
    by_val = {v.series_id: v for v in validations if isinstance(v, Validation)}
    by_fit = {f.series_id: f for f in fits if isinstance(f, Fit)}
    past = store.past_forecasts(engine, shown)
    jobs = []
    for sid in shown:
        earlier = [plots / stands[sid] / f"{safe_name(sid)}-{name}.png" for name in ("forecast", "loss")] if (
            sid in stands) else []  # fmt: skip
        if earlier and earlier[0].is_file():
            kept += [str(p) for p in earlier if p.is_file()]
            continue
        history = store.load_observations(engine, [sid])
        holdout_periods = history["period"].iloc[-config.validation_months :].dt.date.astype(str).tolist()
        champion_kind = published[sid].champion
        predictions = {k: list(c.prediction) for k, c in by_val[sid].candidates.items()
                       if k in (champion_kind, "seasonal_naive")}  # fmt: skip
        champion = pd.DataFrame([r.__dict__ for r in published[sid].rows if r.is_champion])
        losses = {k: [list(row) for row in r.history] for k, r in by_fit[sid].models.items() if r.history}
        jobs.append((sid, history, {"periods": holdout_periods, "predictions": predictions}, champion, losses, folder,
                     past.get(sid)))  # fmt: skip
    # Drawing is the slow part: the series are drawn in the training processes at once (in this process, one at
    # a time: pyplot is not thread-safe).
    with ThreadPoolExecutor(max_workers=config.workers if workers.in_processes() else 1) as pool:
        drawn = list(pool.map(lambda job: workers.call(_plot_series_safely, *job), jobs))
    paths = tuple(kept) + tuple(p for result in drawn if isinstance(result, tuple) for p in result)
    failed = tuple(r for r in drawn if isinstance(r, Skip))
    return Charts(paths, failed)


def _plot_series_safely(*job: Any) -> tuple[str, ...] | Skip:
    """`_plot_series`, where a series whose charts cannot be drawn is that series' problem, not the run's."""
    try:
        return _plot_series(*job)
    except Exception as exc:
        log.warning("series %r: charts not drawn (%s)", job[0], one_line(exc))
        return Skip(str(job[0]), f"charts not drawn: {one_line(exc)}")


def _plot_series(
    sid: str,
    history: pd.DataFrame,
    holdout: dict[str, Any],
    forecasts: pd.DataFrame,
    losses: dict[str, list[list[float | None]]],
    folder: Path,
    past: pd.DataFrame | None = None,
) -> tuple[str, ...]:
    """One series' charts: recent history with holdout predictions, past forecasts and the forecast, and the
    final models' loss."""
    stem = safe_name(sid)
    chart = plots.plot_forecast(history, holdout, forecasts, folder / f"{stem}-forecast.png", sid, past)
    if not losses:
        return (str(chart),)
    loss = plots.plot_loss(losses, folder / f"{stem}-loss.png", f"{sid}: training loss")
    return str(chart), str(loss)


def report_stage(outcome: RunOutcome, config: RunConfig, charts: Charts) -> RunOutcome:
    """Write the run's page and the index across runs (from the published tables); return the outcome with the
    charts, the page and the headline numbers.

    A run that changed nothing (no new data, every forecast standing from one earlier run) writes no page of its
    own: the earlier run's page is its page.
    """
    outcome = dataclasses.replace(outcome, plots=charts.paths, notes=(*outcome.notes, *charts.failed))
    page = write_pages(store.engine(config.database_url()), outcome, config)
    return dataclasses.replace(outcome, report=str(page.page.resolve()), headline=page.headline)


@dataclass(frozen=True)
class Pages:
    page: Path
    headline: tuple[tuple[str, str], ...]


def write_pages(engine: Any, outcome: RunOutcome, config: RunConfig, reports: Path | None = None) -> Pages:
    """A run's page (unless an earlier one stands for it) and the index, into `reports` (default the data
    folder's reports/)."""
    reports = (reports or config.paths().reports).resolve()
    frames = store.run_page_frames(engine, outcome.run_id)
    database = store.redacted(config.database_url())
    stands = set(outcome.unchanged.values())
    earlier = reports / report.page_name(next(iter(stands))) if len(stands) == 1 else None
    same = not (outcome.new_observations or outcome.revised_observations or outcome.trained or outcome.skipped)
    if same and earlier is not None and earlier.is_file() and set(outcome.unchanged) == set(outcome.champions):
        page = earlier
    else:
        page = report.write_run_page(frames, reports, config.paths().plots.resolve(), database,
                                     config.validation_months)  # fmt: skip
    report.write_index(store.runs_overview(engine, report.INDEX_RUNS), reports, database,
                       f"{config.interval_levels[0]:.0%}")  # fmt: skip
    return Pages(page, report.headline(frames))


def _run_key(run_id: str, *_: Any) -> str:
    return run_id


INGEST = Stage("ingest", ingest_stage, "content", lambda config: _ingest_key(config))
SNAPSHOT = Stage("snapshot", snapshot_stage, "content", _snapshot_key, leaves_files=True)
VALIDATE = Stage("validate", validate_chunk, "content", _models_key("validate"), leaves_files=True)
TRAIN = Stage("train", train_chunk, "content", _models_key("train"), leaves_files=True)
GLOBAL = Stage("global-model", global_stage, "content", _global_key, leaves_files=True)
FORECAST = Stage("forecast", forecast_chunk, "content", _forecast_key, io=False)
CHARTS = Stage("charts", charts_stage, "run", _run_key)
PUBLISH = Stage("publish", publish_stage, "run", _run_key)
REPORT = Stage("report", report_stage, "run", lambda outcome, *_: outcome.run_id)
