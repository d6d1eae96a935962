"""How training processes start (see seqcast.workers), light on imports so that a command can start early.

Where there is a fork server (Linux, macOS), they are forked from it: it loads torch and the pipeline once, so
a worker starts in a fork instead of doing those imports itself, and shares those pages. Elsewhere, each is
spawned and loads them itself.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
from multiprocessing.context import BaseContext

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
        multiprocessing.forkserver.ensure_running()
