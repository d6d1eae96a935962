"""How failures are told to people: one line each."""

from __future__ import annotations


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line: its type and the first line of its message."""
    first = (str(exc).strip().splitlines() or [""])[0].strip()
    text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
