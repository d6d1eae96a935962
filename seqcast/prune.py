"""Removing what old runs left on disk: their charts, pages, the model files no kept run uses, and the cached
task results no kept run wrote or read.

Received files (archive/), observations, the lake and every table (the ledger included) are never pruned; a file
seqcast does not know as a run's or a model's is left alone.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Engine

from seqcast import records, store
from seqcast.config import DataPaths
from seqcast.report import page_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pruned:
    kept_runs: tuple[str, ...]
    charts: int  # chart folders removed
    pages: int
    models: int
    task_results: int  # cached task results removed
    bytes_freed: int


def kept_runs(engine: Engine, keep: int) -> set[str]:
    """The `keep` latest completed runs, the runs whose published rows stand for them, and runs still running."""
    runs = store.read_table(engine, "SELECT run_id, status FROM pipeline_runs ORDER BY started_at DESC, run_id DESC")
    completed = [str(r) for r in runs.loc[runs["status"] == "completed", "run_id"]][:keep]
    running = {str(r) for r in runs.loc[runs["status"] == "running", "run_id"]}
    standing: set[str] = set()
    if completed:
        marks = ", ".join(f":r{i}" for i in range(len(completed)))
        sources = store.read_table(
            engine,
            f"SELECT DISTINCT forecast_run_id FROM series_status WHERE run_id IN ({marks}) "
            "AND forecast_run_id IS NOT NULL",
            {f"r{i}": rid for i, rid in enumerate(completed)},
        )
        standing = {str(r) for r in sources["forecast_run_id"]}
    return set(completed) | running | standing


def _used_models(engine: Engine, runs: set[str]) -> set[str]:
    used: set[str] = set()
    ids = sorted(runs)
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        marks = ", ".join(f":r{i}" for i in range(len(part)))
        params = {f"r{i}": rid for i, rid in enumerate(part)}
        for sql in (
            f"SELECT DISTINCT model_id FROM metrics WHERE run_id IN ({marks}) AND model_id IS NOT NULL",
            f"SELECT DISTINCT model_id FROM forecasts WHERE run_id IN ({marks}) AND model_id IS NOT NULL",
            f"SELECT model_id FROM model_runs WHERE run_id IN ({marks})",
        ):
            used |= {str(m) for m in store.read_table(engine, sql, params)["model_id"]}
    return used


def _oldest_start(engine: Engine, runs: set[str]) -> datetime | None:
    """When the earliest of `runs` started (UTC), or None without any."""
    started = store.read_table(engine, "SELECT run_id, started_at FROM pipeline_runs")
    first = started.loc[started["run_id"].astype(str).isin(runs), "started_at"].min()
    return None if pd.isna(first) else pd.Timestamp(first).to_pydatetime().replace(tzinfo=UTC)


def _prune_task_results(folder: Path, before: datetime) -> tuple[int, int]:
    """Remove the stored task results in `folder` last written or read before `before` (the Prefect layer
    touches a result when a run reuses it). A file that is not such a result is left alone. Returns (files,
    bytes)."""
    if not folder.is_dir() or folder.is_symlink():
        return 0, 0
    cutoff = before.timestamp()
    removed = freed = 0
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.is_symlink() or not _inside(path, folder):
            continue
        stat = path.stat()
        if stat.st_mtime >= cutoff or records.stored_result_error(path.read_bytes()) is not None:
            continue
        path.unlink()
        removed, freed = removed + 1, freed + stat.st_size
    return removed, freed


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return path.stat().st_size


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def prune(engine: Engine, paths: DataPaths, keep: int) -> Pruned:
    """Remove the charts and pages of every run but the kept ones (`kept_runs`), the model files that only
    pruned runs used, and the cached task results last used before the earliest kept run started (a later run
    that needs one again recomputes it). Call it holding the data folder's run lock."""
    if keep < 1:
        raise ValueError("keep at least one run")
    kept = kept_runs(engine, keep)
    known = set(store.read_table(engine, "SELECT run_id FROM pipeline_runs")["run_id"].astype(str))
    freed = charts = pages = models = 0
    for run_id in sorted(known - kept):
        folder = paths.plots / run_id
        if folder.is_dir() and not folder.is_symlink() and _inside(folder, paths.plots):
            freed += _size(folder)
            shutil.rmtree(folder)
            charts += 1
        page = paths.reports / page_name(run_id)
        if page.is_file() and not page.is_symlink():
            freed += _size(page)
            page.unlink()
            pages += 1
    used = _used_models(engine, kept)
    recorded = store.read_table(engine, "SELECT model_id, artifact_path FROM model_runs")
    for model_id, artifact in recorded.itertuples(index=False):
        # Artifacts are content-addressed by name in models/ (the recorded path may be relative to another folder).
        path = paths.models / Path(str(artifact)).name
        if str(model_id) in used or not path.is_file() or path.is_symlink() or not _inside(path, paths.models):
            continue
        for file in (path, path.with_name(path.name + ".sha256")):
            if file.is_file() and not file.is_symlink():
                freed += _size(file)
                file.unlink()
        models += 1
    oldest = _oldest_start(engine, kept)
    results, results_bytes = (0, 0) if oldest is None else _prune_task_results(paths.results, oldest)
    freed += results_bytes
    log.info(
        "pruned %d chart folder(s), %d page(s), %d model file(s), %d task result(s)", charts, pages, models, results
    )
    return Pruned(tuple(sorted(kept)), charts, pages, models, results, freed)


__all__ = ["Pruned", "kept_runs", "prune"]
