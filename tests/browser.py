"""Headless Chromium (Debian's `chromium`): screenshots and rendered pages, as a reader's browser shows them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "these tests need a browser: apt-get install chromium (.ci/run installs it)"
    return found


def _run(url: str, *args: str, budget_ms: int) -> subprocess.CompletedProcess[str]:
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               "--disable-dev-shm-usage", f"--virtual-time-budget={budget_ms}", *args, url]  # fmt: skip
    # A generous limit: a busy machine slows Chromium's start, never the page's own (virtual) time.
    return subprocess.run(command, capture_output=True, text=True, timeout=240)


def screenshot(url: str, target: Path, width: int = 1280, height: int = 2400, budget_ms: int = 5000) -> np.ndarray:
    """The page as rendered, as an RGB array."""
    import matplotlib.image

    done = _run(url, f"--screenshot={target}", f"--window-size={width},{height}", budget_ms=budget_ms)
    assert target.is_file(), done.stderr[-2000:]
    image = matplotlib.image.imread(target)
    return (np.asarray(image)[..., :3] * 255).astype(np.uint8)


def rendered(url: str, budget_ms: int = 5000) -> str:
    """The page's DOM once its scripts have run (a single-page app's, say)."""
    done = _run(url, "--dump-dom", budget_ms=budget_ms)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def pixels_near(image: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 30) -> int:
    """How many pixels are within `tolerance` of a colour in every channel."""
    return int((np.abs(image.astype(int) - np.array(rgb)).max(axis=-1) <= tolerance).sum())
