"""A process-wide progress hook: the CLI installs a reporter (a progress bar), the library advances it.

Without a reporter (tests, workers, the Prefect UI) advancing is a no-op.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

_lock = threading.Lock()
_reporter: Callable[[int], None] | None = None


def set_reporter(reporter: Callable[[int], None] | None) -> None:
    global _reporter
    with _lock:
        _reporter = reporter


def advance(n: int = 1) -> None:
    with _lock:
        reporter = _reporter
    if reporter is not None:
        reporter(n)
