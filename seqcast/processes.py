"""How training processes start (see seqcast.workers), light on imports so that a command can start early.

Where there is a fork server (Linux, macOS), they are forked from it: it loads torch and the pipeline once, so
a worker starts in a fork instead of doing those imports itself, and shares those pages. Elsewhere, each is
spawned and loads them itself.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.context import BaseContext

import psutil

#: The module of the jobs sent to the workers (loaded by the fork server, or by each spawned worker).
JOBS_MODULE = "seqcast.pipeline"
#: Loaded once by the fork server too: what the jobs import on first use (statsforecast takes seconds).
PRELOAD = [JOBS_MODULE, "seqcast.models.global_network", "seqcast.models.statistical", "statsforecast.models"]


def context() -> BaseContext:
    """The multiprocessing context training processes start from."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload(PRELOAD)
    return forkserver


def start_fork_server() -> None:
    """Start the fork server now, so that its loading overlaps what the caller does before it trains.

    No effect where there is none, or once it runs. It stops when this process exits.
    """
    if context().get_start_method() == "forkserver":
        # The resource tracker first: its start unblocks SIGINT. Then a Ctrl-C during the fork server's loading
        # is the run's to handle (the fork server ignores SIGINT once loaded).
        multiprocessing.resource_tracker.ensure_running()
        with sigint_blocked():
            multiprocessing.forkserver.ensure_running()


@contextmanager
def sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread for the duration, and so in the processes it starts meanwhile, which
    inherit the mask: Ctrl-C in a terminal, which reaches the whole process group, then stops the run, which
    stops them in order, instead of killing them under it. A Ctrl-C meanwhile is raised when the block ends.
    (Windows has no process groups sharing a Ctrl-C, and no signal masks: there it does nothing.)"""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def training_pids() -> list[int]:
    """The training processes this process started: the children of its fork server, or, where processes are
    spawned, its own children that run multiprocessing's spawn entry point."""
    server = getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None)
    try:
        if server is not None:
            return [p.pid for p in psutil.Process(server).children()]
        return [p.pid for p in psutil.Process().children() if "multiprocessing.spawn" in " ".join(p.cmdline())]
    except psutil.Error:
        return []


def end(found: list[psutil.Process], grace: float) -> None:
    """Stop these processes: SIGTERM, then SIGKILL for those still alive after `grace` seconds; return once
    all are gone (or another `grace` has passed). One already gone, or never seen, is skipped."""
    for process in found:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(found, timeout=grace)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=grace)
