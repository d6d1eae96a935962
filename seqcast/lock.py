"""The data folder's run lock: one run at a time per data folder.

Light on imports, so that a command can check the lock before it loads the pipeline or starts anything.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from seqcast.config import RunConfig


class RunInProgress(RuntimeError):
    """Another run holds the data folder's lock."""


@contextmanager
def run_lock(config: RunConfig) -> Iterator[None]:
    """Hold the data folder's run lock for the duration; raise RunInProgress if another run has it.

    An OS file lock: released by the kernel when its process dies, even on `kill -9`.
    """
    paths = config.paths()
    paths.root.mkdir(parents=True, exist_ok=True)
    handle = open(paths.lock, "a+")  # noqa: SIM115 - held open for as long as the lock
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RunInProgress(
                f"another seqcast run is using {paths.root} (pid {holder}); wait for it to finish"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()
