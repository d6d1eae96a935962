"""The data folder's run lock: one run at a time per data folder (filelock: Linux, macOS and Windows).

Light on imports, so that a command can check the lock before it loads the pipeline or starts anything.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from filelock import FileLock, Timeout

from seqcast.config import RunConfig


class RunInProgress(RuntimeError):
    """Another run holds the data folder's lock."""


#: One lock object per lock file in this process, so that holding it again (nested) is reentrant.
_locks: dict[str, FileLock] = {}


@contextmanager
def run_lock(config: RunConfig) -> Iterator[None]:
    """Hold the data folder's run lock for the duration; raise RunInProgress if another run has it.

    An OS file lock: released by the system when its process dies, even on `kill -9`. The holder's process id
    is written beside it (`.run.pid`) for the message the next run gives.
    """
    paths = config.paths()
    paths.root.mkdir(parents=True, exist_ok=True)
    holder = paths.root / ".run.pid"
    lock = _locks.setdefault(str(paths.lock.resolve()), FileLock(str(paths.lock), timeout=0))
    if lock.is_locked:  # held by this process already (the command line holds it around the whole run)
        with lock:
            yield
        return
    try:
        lock.acquire()
    except Timeout:
        try:
            pid = holder.read_text(encoding="ascii").strip() or "unknown"
        except OSError:
            pid = "unknown"
        raise RunInProgress(
            f"a seqcast run is already in progress on {paths.root} (pid {pid}); this one did not start"
        ) from None
    try:
        holder.write_text(str(os.getpid()), encoding="ascii")
        yield
    finally:
        lock.release()
