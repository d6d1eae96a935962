"""A watcher that stops what a run started once the run is gone, however it ended (`kill -9` included).

A run stops its own processes on every path it controls (success, failure, Ctrl-C, SIGTERM). A killed process
controls none: the temporary Prefect server it started would go on listening, holding the caller's output
pipes. So `seqcast run` starts this small process beside it (in its own session, its output on /dev/null):
it notes the run's descendants while the run lives, and when the run ends it stops those still alive, first
with SIGTERM, then, after a grace period, SIGKILL. After a clean run there is nothing left to stop, and it
exits at once.

    python -m seqcast.sentinel RUN_PID
"""

from __future__ import annotations

import os
import subprocess
import sys

import psutil

from seqcast.processes import end

#: How often the run's descendants are noted, and how long a survivor has to stop on SIGTERM.
POLL_SECONDS = 0.5
GRACE_SECONDS = 5.0


def watch(run_pid: int) -> list[int]:
    """Wait for the run to end, then stop its surviving descendants; return the ids of those it stopped."""
    try:
        run = psutil.Process(run_pid)
    except psutil.NoSuchProcess:
        return []
    me = os.getpid()
    seen: dict[int, psutil.Process] = {}
    while True:
        try:
            for child in run.children(recursive=True):
                if child.pid != me:
                    seen.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            break
        gone, _ = psutil.wait_procs([run], timeout=POLL_SECONDS)  # returns as soon as the run exits
        if gone:
            break
    # `is_running` compares creation times: a process id reused since it was noted is left alone.
    survivors = [p for p in seen.values() if p.is_running()]
    end(survivors, GRACE_SECONDS)
    return [p.pid for p in survivors]


def start() -> subprocess.Popen[bytes]:
    """Start a sentinel for this process. It needs nothing from this process and holds none of its pipes."""
    return subprocess.Popen(
        [sys.executable, "-m", "seqcast.sentinel", str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C to the run's process group leaves it to clean up after the run
        close_fds=True,
    )


if __name__ == "__main__":
    watch(int(sys.argv[1]))
