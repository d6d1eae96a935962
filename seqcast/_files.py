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
_SAFE_SUFFIX = re.compile(r"\.[a-z0-9]{1,10}")


def _current_umask() -> int:
    """The process's umask, read without changing it where the system tells (Linux); else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets under the umask, as `open()` would give it (0o666 less the umask)."""
    return 0o666 & ~_current_umask()


def safe_name(text: str, limit: int = 40) -> str:
    """A file-name-safe, collision-free stand-in for an untrusted string (series id, file stem).

    Keeps a readable slug of the safe characters and adds a hash of the full text, so that
    `a/b` and `a_b` never share a path and `..` can never climb out of a folder.
    """
    slug = _UNSAFE.sub("_", text).strip("_")[:limit] or "x"
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]
    return f"{slug}-{digest}"


def safe_suffix(name: str) -> str:
    """The file name's extension, lowercased, if it is short and plain (`.csv`, `.parquet`); else none."""
    suffix = Path(name).suffix.lower()
    return suffix if _SAFE_SUFFIX.fullmatch(suffix) else ""


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success it is renamed over `target`.

    The file gets the mode the umask gives new files. A crash leaves at worst a `.tmp-*` file that nothing
    reads, never a truncated `target`.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{target.name[:40]}-", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, file_mode())  # mkstemp makes it 0600; every file seqcast writes follows the umask
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
