"""Removing what old runs left on disk: their charts, pages and the model files no kept run uses.

Received files (archive/), observations, the lake and every table (the ledger included) are never pruned; a file
seqcast does not know as a run's or a model's is left alone.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from seqcast import store
from seqcast.config import DataPaths
from seqcast.report import page_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pruned:
    kept_runs: tuple[str, ...]
    charts: int  # chart folders removed
    pages: int
    models: int
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
    """Remove the charts and pages of every run but the kept ones (`kept_runs`), and the model files that only
    pruned runs used. Call it holding the data folder's run lock."""
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
    log.info("pruned %d chart folder(s), %d page(s), %d model file(s)", charts, pages, models)
    return Pruned(tuple(sorted(kept)), charts, pages, models, freed)


__all__ = ["Pruned", "kept_runs", "prune"]
