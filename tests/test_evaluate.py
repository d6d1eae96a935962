from __future__ import annotations

import math

import numpy as np
import pytest

from seqcast.evaluate import mase_scale, score, seasonal_naive, selection_score


def test_seasonal_naive_repeats_the_last_season() -> None:
    train = np.arange(24.0)
    np.testing.assert_array_equal(seasonal_naive(train, 14), [*range(12, 24), 12, 13])


def test_metrics_on_known_values() -> None:
    train = np.array([1.0] * 12 + [3.0] * 12)  # lag-12 errors: 2.0 each
    m = score(np.array([10.0, 20.0]), np.array([12.0, 15.0]), train)
    assert m.mae == pytest.approx(3.5)
    assert m.rmse == pytest.approx(math.sqrt((4 + 25) / 2))
    assert m.mape == pytest.approx((20 + 25) / 2)
    assert m.smape == pytest.approx(100 * (2 * 2 / 22 + 2 * 5 / 35) / 2)
    assert m.mase == pytest.approx(3.5 / 2.0)
    assert mase_scale(train) == pytest.approx(2.0)


def test_mape_skips_zero_actuals_and_mase_undefined_without_variation() -> None:
    m = score(np.array([0.0, 10.0]), np.array([1.0, 11.0]), np.ones(24))
    assert m.mape == pytest.approx(10.0)
    assert math.isnan(m.mase)
    assert selection_score(m) == pytest.approx(m.mae)
