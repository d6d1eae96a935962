"""The report pages in a real browser (headless Chromium): what a planner sees when opening them from the folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.browser import pixels_near, rendered, screenshot
from tests.test_report import _runs

#: Matplotlib's colours: the forecast (tab:red) and the past published forecasts (tab:blue).
RED = (214, 39, 40)
BLUE = (31, 119, 180)

pytestmark = pytest.mark.browser


def test_a_runs_page_and_the_index_render_with_their_charts_and_numbers(tmp_path: Path) -> None:
    _config, _panel, outcomes = _runs(tmp_path, arrivals=3)
    page = Path(outcomes[-1].report)
    dom = rendered(page.as_uri())
    for label, value in outcomes[-1].headline:
        assert re.search(
            rf'<div class="value">{re.escape(value)}</div><div class="label">{re.escape(label)}</div>', dom
        )
    assert "Needs attention" in dom or "degraded" not in dom
    for sid in ("s000", "s001", "s002"):
        assert f"<h3>{sid}</h3>" in dom

    image = screenshot(page.as_uri(), tmp_path / "run.png", height=2600)
    # The charts are drawn on the page: the forecast line and its bands, and last months' forecasts as points.
    assert pixels_near(image, RED) > 500, "no forecast line on the page"
    assert pixels_near(image, BLUE) > 200, "no past forecasts on the page"

    index = page.parent / "index.html"
    dom = rendered(index.as_uri())
    assert all(o.run_id in dom for o in outcomes)
    shot = screenshot(index.as_uri(), tmp_path / "index.png", height=1400)
    assert pixels_near(shot, BLUE) > 200, "no accuracy-over-time chart on the index"
