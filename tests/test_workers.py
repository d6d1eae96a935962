"""Chunk jobs in training processes: same results as in this process, their logs and errors come back here."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import threading
import time
from pathlib import Path

import psutil
import pytest

from seqcast import forecast as fc
from seqcast import lake, workers
from seqcast.config import model_config_for
from seqcast.records import SeriesRef
from tests.conftest import synthetic_panel

CONFIGS = [model_config_for("rnn", "fast", epochs=15)]


def _refs(tmp_path: Path) -> list[SeriesRef]:
    panel = synthetic_panel(3, months=60).assign(is_filled=False)
    return lake.snapshot(panel, tmp_path / "lake")


def test_a_chunk_job_in_a_process_gives_what_it_gives_here_and_logs_here(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    refs = _refs(tmp_path)
    here = fc.validate_many(refs, CONFIGS, 12, tmp_path / "models-here")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="seqcast"), workers.training_processes(2):
        assert workers.in_processes()
        there = workers.call(fc.validate_many, refs, CONFIGS, 12, tmp_path / "models-there")
    assert not workers.in_processes()
    assert [v.candidates["rnn"].prediction for v in there] == [v.candidates["rnn"].prediction for v in here]
    # The models were stored by the process that trained them.
    assert len(list((tmp_path / "models-there").glob("*.pt"))) == len(refs)
    # Its per-series lines (one record for the chunk) were handled by this process's logger.
    records = [r for r in caplog.records if "holdout" in r.getMessage()]
    assert len(records) == 1 and records[0].process != os.getpid()
    assert all(f"series {ref.series_id}: holdout" in records[0].getMessage() for ref in refs)


def test_a_failing_chunk_job_raises_its_error_here(tmp_path: Path) -> None:
    refs = _refs(tmp_path)
    missing = [dataclasses.replace(refs[0], path=str(tmp_path / "lake" / "gone.parquet"))]
    with workers.training_processes(2), pytest.raises(FileNotFoundError):
        assert workers.in_processes()
        workers.call(fc.validate_many, missing, CONFIGS, 12, tmp_path / "models")


def _write_after(seconds: float, path: str) -> str:
    time.sleep(seconds)
    Path(path).write_text("done")
    return path


def test_leaving_the_block_on_an_error_waits_for_a_running_job(tmp_path: Path) -> None:
    target = tmp_path / "written.txt"
    started = threading.Event()

    def job() -> None:
        started.set()
        workers.call(_write_after, 1.5, str(target))

    thread = threading.Thread(target=job)
    with pytest.raises(RuntimeError, match="stage failed"), workers.training_processes(2):
        thread.start()
        started.wait()
        time.sleep(0.5)  # the job is in its process now
        raise RuntimeError("stage failed")
    # The run's block is left only once nothing writes any more.
    assert target.read_text() == "done"
    thread.join()
    assert not workers.in_processes()


def _worker_state() -> tuple[int, bool]:
    import gc
    import sys

    return gc.get_freeze_count(), "seqcast.pipeline" in sys.modules


def _workers_of_this_process() -> set[int]:
    """Process ids of this process's pool workers: its fork server's children (or its spawned children)."""
    found = set()
    for child in psutil.Process().children():
        command = " ".join(child.cmdline())
        if "forkserver" in command:
            found |= {worker.pid for worker in child.children()}
        elif "spawn_main" in command:
            found.add(child.pid)
    return found


def test_start_now_starts_every_worker_before_the_first_job_and_workers_load_the_pipeline() -> None:
    earlier = _workers_of_this_process()  # other tests' workers may still be on their way out
    with workers.training_processes(2):
        time.sleep(0.5)
        assert _workers_of_this_process() - earlier == set()  # on first use only
    with workers.training_processes(2, start_now=True):
        started = _workers_of_this_process() - earlier
        assert len(started) == 2  # before any job
        if "forkserver" in multiprocessing.get_all_start_methods():  # forked from the fork server, not this process
            assert os.getpid() not in {psutil.Process(pid).ppid() for pid in started}
        frozen, loaded = workers.call(_worker_state)
    # A worker's start loaded the jobs' modules and froze them out of the garbage collector's way.
    assert loaded and frozen > 10_000
