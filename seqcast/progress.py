"""Process-wide hooks: the CLI installs a reporter (a progress bar), which the library advances, and a stop
listener, which the library tells when a run is being stopped (Ctrl-C, SIGTERM), before it unwinds.

Without them (tests, workers, the Prefect UI) both are no-ops.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

_lock = threading.Lock()
_reporter: Callable[[int], None] | None = None
_stop_listener: Callable[[], None] | None = None


def set_reporter(reporter: Callable[[int], None] | None) -> None:
    global _reporter
    with _lock:
        _reporter = reporter


def advance(n: int = 1) -> None:
    with _lock:
        reporter = _reporter
    if reporter is not None:
        reporter(n)


def set_stop_listener(listener: Callable[[], None] | None) -> None:
    global _stop_listener
    with _lock:
        _stop_listener = listener


def stopping() -> None:
    """A run is being stopped: what its unwinding logs next is the noise of the stop (work cut short)."""
    with _lock:
        listener = _stop_listener
    if listener is not None:
        listener()
