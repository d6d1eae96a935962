"""File helpers shared by the modules that write to the data folder: atomic writes and safe names."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def safe_name(text: str, limit: int = 40) -> str:
    """A file-name-safe, collision-free stand-in for an untrusted string (series id, file stem).

    Keeps a readable slug of the safe characters and adds a hash of the full text, so that
    `a/b` and `a_b` never share a path and `..` can never climb out of a folder.
    """
    slug = _UNSAFE.sub("_", text).strip("_")[:limit] or "x"
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]
    return f"{slug}-{digest}"


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success it is renamed over `target`.

    A crash leaves at worst a `.tmp-*` file that nothing reads, never a truncated `target`.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{target.name[:40]}-", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(target: Path, write: Callable[[Path], object]) -> Path:
    """Write `target` through `write(tmp_path)` atomically; returns `target`."""
    with atomic_path(target) as tmp:
        write(tmp)
    return target


def atomic_copy(source: Path, target: Path) -> Path:
    return atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()
