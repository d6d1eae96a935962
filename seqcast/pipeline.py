"""The monthly pipeline's stages as plain functions, and a sequential runner that needs no orchestrator.

Stages pass small records (paths, ids, hashes, rows), never frames or models, so that the Prefect
flow in `flows/` can wrap each stage in a cached, retryable task without changing it:

    ingest -> snapshot -> validate -> train -> forecast -> charts + publish -> report
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from seqcast import forecast as fc
from seqcast import ingest, lake, plots, progress, store, workers
from seqcast._files import safe_name
from seqcast.config import RunConfig
from seqcast.errors import one_line
from seqcast.lock import run_lock
from seqcast.report import write_html

log = logging.getLogger(__name__)


def new_run_id() -> str:
    return f"{store.utcnow():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def begin_run(config: RunConfig, flow_run_id: str | None = None) -> str:
    """Record a new run as running (under the run lock) and return its id."""
    run_id = new_run_id()
    engine = store.open_engine(config.database_url())
    try:
        store.start_run(engine, run_id, flow_run_id, config_json(config), str(config.paths().root.resolve()))
    finally:
        engine.dispose()
    return run_id


def fail_run(config: RunConfig, run_id: str, exc: BaseException) -> None:
    """Mark a run failed with the reason (its partial results were never published)."""
    engine = store.open_engine(config.database_url())
    try:
        store.finish_run(engine, run_id, "failed", f"{type(exc).__name__}: {exc}")
    finally:
        engine.dispose()


def chunked(items: list[Any], size: int, workers: int = 1) -> list[list[Any]]:
    """Consecutive chunks of `size` items, in order; with several workers, the last `2 * workers` chunks' worth
    of items comes in half-size chunks.

    The chunks' jobs run `workers` at a time, in order: short last jobs end closer together, so a worker waits
    less for another's long last one (the run's end waits for the last job).
    """
    tail = 2 * workers * size if workers > 1 else 0
    head = max(0, len(items) - tail) // size * size
    small = max(1, size // 2) if workers > 1 else size
    return [items[i : i + size] for i in range(0, head, size)] + [
        items[i : i + small] for i in range(head, len(items), small)
    ]


# ---------------------------------------------------------------------------------------------- stages


def ingest_stage(config: RunConfig) -> dict[str, Any]:
    """Ingest `sources` and every inbox file; the bundled series when the database is empty and no file came.

    Returns {"batches": [BatchReport as dict], "new_observations": int, "rejected_files": [...]}.
    """
    paths = config.paths().create()
    engine = store.open_engine(config.database_url())
    try:
        sources = [Path(s) for s in config.sources] + ingest.inbox_files(paths)
        # The demo only for a store that never received anything (a failed file is not "nothing").
        if not sources and config.use_bundled_demo and store.count_batches(engine) == 0:
            sources = [ingest.bundled_series_path()]
        reports = ingest.ingest_files(engine, paths, sources, series_id=config.series_id)
        store_id, version = store.store_identity(engine)
    finally:
        engine.dispose()
    failed = [r for r in reports if r.status == "failed"]
    if failed:
        # Raised, so that an orchestrator retries the stage (the files are still where they were).
        first = failed[0].error or failed[0].source
        raise ingest.IngestFailure(f"{len(failed)} file(s) not ingested; first: {first}")
    batches = [asdict(r) for r in reports]
    return {
        "batches": batches,
        "new_observations": sum(r.rows_inserted for r in reports),
        "revised_observations": sum(r.rows_updated for r in reports),
        "rejected_files": [b for b in batches if b["status"] == "rejected"],
        "data_version": f"{store_id}:{version}",
    }


def pending_files(config: RunConfig) -> list[str]:
    """The files a run would ingest now: its sources, then the inbox."""
    return [str(p) for p in [*map(Path, config.sources), *ingest.inbox_files(config.paths())]]


def data_version(config: RunConfig) -> str:
    """A key that changes whenever the stored observations change (for caching the snapshot)."""
    engine = store.open_engine(config.database_url())
    try:
        store_id, version = store.store_identity(engine)
    finally:
        engine.dispose()
    return f"{store_id}:{version}"


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


def snapshot_stage(config: RunConfig) -> dict[str, Any]:
    """Write the lake's Parquet snapshots and decide which series can be trained.

    Returns {"eligible": [SeriesRef dicts], "skipped": [{"series_id", "reason"}], "filled": {...}}.
    """
    paths = config.paths().create()
    engine = store.open_engine(config.database_url())
    try:
        frame = store.load_observations(engine)
    finally:
        engine.dispose()
    filled: dict[str, int] = {}
    if config.fill_gaps and len(frame):
        before = frame.groupby("series_id").size()
        frame = _fill_gaps(frame)
        grown = frame.groupby("series_id").size() - before
        filled = {str(k): int(v) for k, v in grown.items() if v > 0}
    refs = [r.to_dict() for r in lake.snapshot(frame, paths.lake)]
    configs = config.model_configs()
    eligible, skipped = [], []
    for ref in refs:
        reason = fc.ineligible_reason(ref, configs, config.holdout)
        if reason:
            skipped.append({"series_id": ref["series_id"], "reason": reason})
            log.warning("series %r not trained: %s", ref["series_id"], reason)
        else:
            eligible.append(ref)
    return {"eligible": eligible, "skipped": skipped, "filled": filled}


def _per_series(
    refs: list[dict[str, Any]], work: Callable[[dict[str, Any]], dict[str, Any]], advance: bool = True
) -> list[dict[str, Any]]:
    """Run `work` on each series; a failure is recorded for that series and the others go on."""
    results = []
    for ref in refs:
        try:
            results.append(work(ref))
        except Exception as exc:  # one bad series must not sink the run
            log.error("series %r failed: %s", ref["series_id"], exc)
            results.append({"series_id": ref["series_id"], "error": f"{type(exc).__name__}: {exc}"})
        if advance:
            progress.advance(1)
    return results


def _chunk(
    refs: list[dict[str, Any]],
    many: Callable[[list[dict[str, Any]], bool], list[dict[str, Any]]],
    batched: bool,
) -> list[dict[str, Any]]:
    """Run `many` on the whole chunk (batched); if that fails, one series at a time so that only the
    failing series are lost (a failure is recorded for that series and the others go on)."""
    if batched and len(refs) > 1:
        try:
            results = many(refs, True)
        except Exception as exc:
            log.warning("batched training of %d series failed (%s); training them one by one", len(refs), exc)
        else:
            progress.advance(len(refs))
            return results
    return _per_series(refs, lambda ref: many([ref], False)[0])


def validate_chunk(refs: list[dict[str, Any]], config: RunConfig) -> list:
    """Holdout validation of every model kind (and seasonal naive) for a chunk of series."""
    configs, models_dir = config.model_configs(), config.paths().models

    def many(chunk: list[dict[str, Any]], batched: bool) -> list[dict[str, Any]]:
        return workers.call(fc.validate_many, chunk, configs, config.holdout, models_dir, batched)

    return _chunk(refs, many, config.batch_training)


def train_chunk(refs: list[dict[str, Any]], config: RunConfig) -> list:
    """Final refit on all data of every model kind for a chunk of series (stored fits are reused)."""
    configs, models_dir = config.model_configs(), config.paths().models

    def many(chunk: list[dict[str, Any]], batched: bool) -> list[dict[str, Any]]:
        return workers.call(fc.train_many_series, chunk, configs, models_dir, batched, config.horizon)

    return _chunk(refs, many, config.batch_training)


def global_stage(refs: list[dict[str, Any]], config: RunConfig) -> dict[str, Any] | None:
    """The global model's holdout scores and forecasts for every series (None when not configured)."""
    global_config = config.global_config()
    if global_config is None or not refs:
        return None
    return fc.global_candidates(
        refs, global_config, config.holdout, config.horizon, config.paths().models, config.global_steps
    )


add_global = fc.add_global


def forecast_chunk(
    refs: list[dict[str, Any]], validations: list[dict], finals: list[dict], config: RunConfig
) -> list[dict[str, Any]]:
    """The published forecasts (every model, champion marked) for a chunk of series."""
    by_val = {v["series_id"]: v for v in validations}
    by_final = {f["series_id"]: f for f in finals}
    ready = [
        r
        for r in refs
        if "error" not in by_val.get(r["series_id"], {"error": 1})
        and "error" not in by_final.get(r["series_id"], {"error": 1})
    ]
    return workers.call(_forecast_all, ready, by_val, by_final, config.horizon, config.interval_level)


def _forecast_all(
    refs: list[dict[str, Any]], by_val: dict[str, dict], by_final: dict[str, dict], horizon: int, level: float
) -> list[dict[str, Any]]:
    def work(ref: dict[str, Any]) -> dict[str, Any]:
        sid = ref["series_id"]
        return fc.forecast_series(ref, by_val[sid], by_final[sid], horizon, level)

    return _per_series(refs, work, advance=False)


@dataclass
class RunOutcome:
    """What a run did, for humans and for the run row."""

    run_id: str
    new_observations: int
    revised_observations: int
    batches: list[dict[str, Any]]
    trained: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    champions: dict[str, str] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    forecasts: list[dict[str, Any]] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    report: str = ""
    database: str = ""
    data_dir: str = ""

    def to_dict(self) -> dict[str, Any]:
        # Not `asdict`, which deep-copies every row: a fresh outcome owns its lists already.
        return {f.name: getattr(self, f.name) for f in fields(self)}


def publish_stage(
    run_id: str,
    config: RunConfig,
    ingested: dict[str, Any],
    snapshot: dict[str, Any],
    validations: list[dict[str, Any]],
    finals: list[dict[str, Any]],
    forecasts: list[dict[str, Any]],
) -> dict[str, Any]:
    """Write the run's models, metrics, forecasts and run row in one transaction; return the outcome."""
    by_val, by_final, by_fc, errors = _by_series(validations, finals, forecasts)

    outcome = RunOutcome(
        run_id=run_id,
        new_observations=ingested["new_observations"],
        revised_observations=ingested.get("revised_observations", 0),
        batches=ingested["batches"],
        skipped=list(snapshot["skipped"]),
        database=_redact(config.database_url()),
        data_dir=str(config.paths().root),
    )
    model_rows: list[dict[str, Any]] = []
    history_rows: list[dict[str, Any]] = []
    metric_rows: list[dict[str, Any]] = []
    forecast_rows: list[dict[str, Any]] = []
    status_rows: list[dict[str, Any]] = []
    engine = store.open_engine(config.database_url())
    try:
        all_ids = [c["model"]["model_id"] for v in by_val.values() for c in v["candidates"].values() if c["model"]]
        all_ids += [r["model_id"] for f in by_final.values() for r in f["models"].values()]
        known = store.known_model_ids(engine, all_ids)
    finally:
        engine.dispose()
    for ref in snapshot["eligible"]:
        sid = ref["series_id"]
        if sid in errors or sid not in by_fc:
            reason = errors.get(sid, "no forecast produced")
            outcome.skipped.append({"series_id": sid, "reason": f"training failed: {reason}"})
            continue
        validation, final, published = by_val[sid], by_final[sid], by_fc[sid]
        records = [c["model"] for c in validation["candidates"].values() if c["model"]]
        records += list(final["models"].values())
        # Trained for this run = a model not yet published; a fit left by a killed run counts here.
        trained = any(r["model_id"] not in known for r in records)
        (outcome.trained if trained else outcome.reused).append(sid)
        filled = snapshot.get("filled", {}).get(sid)
        status_rows.append(
            {
                "run_id": run_id,
                "series_id": sid,
                "status": "trained" if trained else "reused",
                "reason": ("new or revised data" if trained else "data and config unchanged: stored models reused")
                + (f"; {filled} missing month(s) interpolated" if filled else ""),
            }
        )
        for r in records:
            model_rows.append(
                {
                    "model_id": r["model_id"],
                    "series_id": r.get("series_id", sid),  # a global model's is "*"
                    "model_kind": r["model_kind"],
                    "purpose": r["purpose"],
                    "config_hash": r["config_hash"],
                    "data_hash": r["data_hash"],
                    "trained_at": store.utcnow(),
                    "train_seconds": r["train_seconds"],
                    "epochs": r["epochs"],
                    "artifact_path": r["artifact_path"],
                    "run_id": run_id,
                }
            )
            history_rows.extend(
                {
                    "model_id": r["model_id"],
                    "epoch": int(e),
                    "train_loss": float(t),
                    "val_loss": None if v is None else float(v),
                }
                for e, t, v in r["history"]
            )
        champion = published["champion"]
        outcome.champions[sid] = champion
        for kind, candidate in validation["candidates"].items():
            m = candidate["metrics"]
            row = {
                "run_id": run_id,
                "series_id": sid,
                "model_kind": kind,
                "holdout_start": store.as_date(validation["holdout_start"]),
                "holdout_end": store.as_date(validation["holdout_end"]),
                **{k: _finite(m[k]) for k in ("mae", "rmse", "mape", "smape", "mase")},
                "is_champion": kind == champion,
                "model_id": candidate["model"]["model_id"] if candidate["model"] else None,
            }
            metric_rows.append(row)
        forecast_rows.extend({"run_id": run_id, **row} for row in published["rows"])
    for item in snapshot["skipped"]:
        status_rows.append(
            {"run_id": run_id, "series_id": item["series_id"], "status": "skipped", "reason": item["reason"]}
        )
    for item in outcome.skipped[len(snapshot["skipped"]) :]:
        status_rows.append(
            {"run_id": run_id, "series_id": item["series_id"], "status": "failed", "reason": item["reason"]}
        )
    rows = store.RunRows(
        run_id=run_id,
        new_observations=outcome.new_observations,
        series_trained=len(outcome.trained),
        series_reused=len(outcome.reused),
        series_skipped=len(outcome.skipped),
        model_runs=_unique(model_rows, "model_id"),
        training_history=_unique(history_rows, ("model_id", "epoch")),
        metrics=metric_rows,
        forecasts=forecast_rows,
        series_status=status_rows,
    )
    engine = store.open_engine(config.database_url())
    try:
        store.write_run(engine, rows)
    finally:
        engine.dispose()
    outcome.metrics = [
        {**m, "holdout_start": str(m["holdout_start"]), "holdout_end": str(m["holdout_end"])} for m in metric_rows
    ]
    outcome.forecasts = [
        {**f, "origin": str(f["origin"]), "period": str(f["period"])} for f in forecast_rows if f["is_champion"]
    ]
    return outcome.to_dict()


def _by_series(
    validations: list[dict[str, Any]], finals: list[dict[str, Any]], forecasts: list[dict[str, Any]]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], dict[str, dict[str, Any]], dict[str, str]]:
    """Each stage's results by series id, and each failed series' error. A series is published when it has a
    forecast and no error (`published`)."""
    by_val = {v["series_id"]: v for v in validations if "error" not in v}
    by_final = {f["series_id"]: f for f in finals if "error" not in f}
    by_fc = {f["series_id"]: f for f in forecasts if "error" not in f}
    errors = {r["series_id"]: r["error"] for r in [*validations, *finals, *forecasts] if "error" in r}
    return by_val, by_final, by_fc, errors


def published(forecasts: dict[str, dict[str, Any]], errors: dict[str, str]) -> list[str]:
    """The ids of the series a run publishes, sorted."""
    return sorted(sid for sid in forecasts if sid not in errors)


def _unique(rows: list[dict[str, Any]], key: str | tuple[str, ...]) -> list[dict[str, Any]]:
    seen: dict[Any, dict[str, Any]] = {}
    for row in rows:
        k = tuple(row[c] for c in key) if isinstance(key, tuple) else row[key]
        seen.setdefault(k, row)
    return list(seen.values())


def _finite(value: float) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def _redact(url: Any) -> str:
    """A database URL without its password, for printing."""
    return store.redacted(url)


def charts_stage(
    run_id: str,
    config: RunConfig,
    validations: list[dict[str, Any]],
    finals: list[dict[str, Any]],
    forecasts: list[dict[str, Any]],
) -> list[str]:
    """Plot the first `max_plots` published series (by id): loss curves; history, holdout and forecast.

    Needs the stages' results, not the published tables, so it can run while `publish_stage` writes.
    Returns the charts' paths.
    """
    by_val, by_final, by_fc, errors = _by_series(validations, finals, forecasts)
    shown = published(by_fc, errors)[: config.max_plots]
    folder = (config.paths().plots / run_id).resolve()
    engine = store.open_engine(config.database_url())
    try:
        histories = {sid: store.load_observations(engine, [sid]) for sid in shown}
    finally:
        engine.dispose()
    jobs = []
    for sid in shown:
        history = histories[sid]
        holdout_periods = history["period"].iloc[-config.holdout :].dt.date.astype(str).tolist()
        predictions = {k: c["prediction"] for k, c in by_val[sid]["candidates"].items()}
        champion = pd.DataFrame([row for row in by_fc[sid]["rows"] if row["is_champion"]])
        losses = {k: r["history"] for k, r in by_final[sid]["models"].items()}
        jobs.append((sid, history, {"periods": holdout_periods, "predictions": predictions}, champion, losses, folder))
    # Drawing is the slow part (about 0.1 s a chart): the series are drawn in the training processes at once
    # (in this process, one at a time: pyplot is not thread-safe).
    with ThreadPoolExecutor(max_workers=config.workers if workers.in_processes() else 1) as pool:
        return [path for pair in pool.map(lambda job: workers.call(_plot_series_safely, *job), jobs) for path in pair]


def _plot_series_safely(*job: Any) -> tuple[str, ...]:
    """`_plot_series`, where a series whose charts cannot be drawn is that series' problem (logged), not the run's."""
    try:
        return _plot_series(*job)
    except Exception as exc:
        log.warning("series %r: charts not drawn (%s)", job[0], one_line(exc))
        return ()


def report_stage(outcome: dict[str, Any], config: RunConfig, plots: list[str]) -> dict[str, Any]:
    """Write the run's HTML page (tables and `plots`); return the outcome with the plots and the page."""
    outcome = {**outcome, "plots": plots}
    page = write_html(outcome, config.paths().reports.resolve())
    return {**outcome, "report": str(page.resolve())}


def _plot_series(
    sid: str,
    history: pd.DataFrame,
    holdout: dict[str, Any],
    forecasts: pd.DataFrame,
    losses: dict[str, list],
    folder: Path,
) -> tuple[str, str]:
    """One series' two charts: history with holdout predictions and forecast, and the final models' loss."""
    stem = safe_name(sid)
    chart = plots.plot_forecast(
        history, holdout, forecasts, folder / f"{stem}-forecast.png", f"{sid}: actual, holdout predictions, forecast"
    )
    loss = plots.plot_loss(losses, folder / f"{stem}-loss.png", f"{sid}: training loss")
    return str(chart), str(loss)


# ---------------------------------------------------------------------------------------------- runner


def run_pipeline(config: RunConfig, flow_run_id: str | None = None) -> dict[str, Any]:
    """Run every stage in this process, in order, under the data folder's lock (no orchestrator needed)."""
    with run_lock(config), workers.training_processes(config.workers, start_now=bool(pending_files(config))):
        run_id = begin_run(config, flow_run_id)
        try:
            ingested = ingest_stage(config)
            snap = snapshot_stage(config)
            refs = snap["eligible"]
            # Chunks as the flow has them, a few at a time (their jobs go to `workers` processes). A chunk is
            # forecast as soon as it is trained, unless the global model, trained on every series, competes.
            with_global = config.global_config() is not None

            def model(chunk: list[dict[str, Any]]) -> tuple[list, list, list]:
                validated, trained = validate_chunk(chunk, config), train_chunk(chunk, config)
                return validated, trained, [] if with_global else forecast_chunk(chunk, validated, trained, config)

            chunks = chunked(refs, config.chunk_size, config.workers)
            with ThreadPoolExecutor(max_workers=workers.THREADS_PER_PROCESS * config.workers) as pool:
                parts = list(pool.map(model, chunks))
                validations = [r for v, _, _ in parts for r in v]
                finals = [r for _, t, _ in parts for r in t]
                forecasts = [r for _, _, f in parts for r in f]
                if with_global:
                    validations, finals = fc.add_global(validations, finals, global_stage(refs, config))
                    forecasts = [
                        r
                        for part in pool.map(
                            lambda c: forecast_chunk(c, for_refs(validations, c), for_refs(finals, c), config), chunks
                        )
                        for r in part
                    ]
            # The charts are drawn in the training processes while this thread writes the tables.
            with ThreadPoolExecutor(max_workers=1) as side:
                plots = side.submit(charts_stage, run_id, config, validations, finals, forecasts)
                outcome = publish_stage(run_id, config, ingested, snap, validations, finals, forecasts)
                return report_stage(outcome, config, plots.result())
        except BaseException as exc:
            fail_run(config, run_id, exc)
            raise


def config_json(config: RunConfig) -> str:
    return json.dumps(config.model_dump(mode="json"), sort_keys=True)


def stage_key(stage: str, config: RunConfig, refs: list[dict[str, Any]] | None = None, extra: str = "") -> str:
    """Content key of a stage's result: stage, model code version, the settings that shape it, and
    the data hashes of the series it covers. Equal keys mean equal results."""
    from seqcast.config import MODEL_CODE_VERSION

    parts = [
        stage,
        MODEL_CODE_VERSION,
        str(config.paths().root.resolve()),
        ",".join(c.config_hash() for c in config.model_configs()),
        f"h{config.horizon}-ho{config.holdout}-l{config.interval_level}-f{config.fill_gaps}",
        f"global-{glob.config_hash()}-{config.global_steps}" if (glob := config.global_config()) else "no-global",
        extra,
    ]
    if refs is not None:
        parts.extend(f"{r['series_id']}={r['data_hash']}" for r in refs)
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
    return f"{stage}-{digest}"


def chunk_label(refs: list[dict[str, Any]]) -> str:
    """A short human label for a chunk of series (task names in the UI)."""
    first = str(refs[0]["series_id"])[:40] if refs else "empty"
    return first if len(refs) <= 1 else f"{first}+{len(refs) - 1}"


def for_refs(results: list[dict[str, Any]], refs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-series results that belong to these refs."""
    wanted = {r["series_id"] for r in refs}
    return [r for r in results if r["series_id"] in wanted]


def outcome_from_store(engine: Any, config: RunConfig, run_id: str | None = None) -> dict[str, Any]:
    """Rebuild a completed run's outcome from the database (for `seqcast report`); latest by default."""
    from seqcast.store import schema

    runs_t = schema.pipeline_runs
    query = sa.select(runs_t.c.run_id, runs_t.c.started_at, runs_t.c.finished_at, runs_t.c.new_observations).where(
        runs_t.c.status == "completed"
    )
    if run_id is not None:
        query = query.where(runs_t.c.run_id == run_id)
    runs = store.read_query(engine, query.order_by(runs_t.c.started_at.desc()).limit(1))
    if runs.empty:
        raise LookupError(f"no completed run {run_id!r}" if run_id else "no completed run yet")
    run = runs.iloc[0]
    rid = str(run["run_id"])
    metrics = store.read_query(engine, sa.select(schema.metrics).where(schema.metrics.c.run_id == rid))
    forecasts_t = schema.forecasts
    forecasts = store.read_query(
        engine, sa.select(forecasts_t).where(forecasts_t.c.run_id == rid, forecasts_t.c.is_champion.is_(True))
    )
    status_t = schema.series_status
    status = store.read_query(
        engine, sa.select(status_t.c.series_id, status_t.c.status, status_t.c.reason).where(status_t.c.run_id == rid)
    )
    batches_t = schema.ingest_batches
    batches = store.read_query(
        engine,
        sa.select(batches_t)
        .where(batches_t.c.received_at.between(run["started_at"], run["finished_at"]))
        .order_by(batches_t.c.received_at),
    )
    folder = (config.paths().plots / rid).resolve()

    def records(frame: pd.DataFrame, dates: tuple[str, ...]) -> list[dict[str, Any]]:
        out = frame.astype(object).where(frame.notna(), None).to_dict("records")
        for row in out:
            for col in dates:
                row[col] = str(row[col])
        return [{str(k): v for k, v in row.items()} for row in out]

    return {
        "run_id": rid,
        "new_observations": int(run["new_observations"]),
        "revised_observations": int(batches["rows_updated"].sum()) if len(batches) else 0,
        "batches": records(batches, ("received_at",)),
        "trained": sorted(status.loc[status["status"] == "trained", "series_id"]),
        "reused": sorted(status.loc[status["status"] == "reused", "series_id"]),
        "skipped": [
            {"series_id": r.series_id, "reason": r.reason}
            for r in status[status["status"].isin(["skipped", "failed"])].itertuples()
        ],
        "champions": {str(m["series_id"]): str(m["model_kind"]) for m in records(metrics, ()) if m["is_champion"]},
        "metrics": records(metrics, ("holdout_start", "holdout_end")),
        "forecasts": records(forecasts, ("origin", "period")),
        "plots": sorted(str(p) for p in folder.glob("*.png")) if folder.exists() else [],
        "database": _redact(config.database_url()),
        "data_dir": str(config.paths().root),
    }
