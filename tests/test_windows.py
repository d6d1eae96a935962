from __future__ import annotations

import numpy as np

from seqcast.windows import fit_scaler, last_window, make_windows


def test_minmax_scaler_is_fit_on_training_values_only() -> None:
    scaler = fit_scaler(np.array([10.0, 20.0, 30.0]), "minmax")
    assert (scaler.lo, scaler.hi) == (10.0, 30.0)
    np.testing.assert_allclose(scaler.transform(np.array([10.0, 40.0])), [0.0, 1.5])  # beyond: not clipped
    np.testing.assert_allclose(scaler.inverse(scaler.transform(np.array([12.5]))), [12.5])


def test_log_window_scaler_round_trips_and_falls_back_for_non_positive() -> None:
    y = np.array([100.0, 110.0, 121.0, 133.1])
    scaler = fit_scaler(y, "log_window")
    assert scaler.log and scaler.centred
    np.testing.assert_allclose(scaler.inverse(scaler.transform(y)), y)
    signed = fit_scaler(np.array([-1.0, 2.0, -3.0, 4.0]), "log_window")
    assert not signed.log
    np.testing.assert_allclose(signed.inverse(signed.transform(np.array([-5.0]))), [-5.0])


def test_windows_shapes_and_centring() -> None:
    z = np.arange(10.0)
    X, Y = make_windows(z, lookback=3, out=2, centred=False)
    assert X.shape == (6, 3, 1) and Y.shape == (6, 2)
    np.testing.assert_array_equal(X[0, :, 0], [0, 1, 2])
    np.testing.assert_array_equal(Y[-1], [8, 9])
    Xc, Yc = make_windows(z, lookback=3, out=2, centred=True)
    np.testing.assert_array_equal(Xc[0, :, 0], [-2, -1, 0])
    np.testing.assert_array_equal(Yc[0], [1, 2])
    window, anchor = last_window(z, 3, centred=True, out=2)
    np.testing.assert_array_equal(anchor, [9.0, 9.0])
    assert window.shape == (1, 3, 1)


def test_seasonal_windows_are_year_over_year_changes_around_seasonal_naive() -> None:
    z = np.arange(40.0) ** 1.5
    X, Y = make_windows(z, lookback=12, out=14, centred=True, seasonal=True)
    # the first window needs a season of history: inputs z[12..23] minus z[0..11], ending at index 23
    np.testing.assert_allclose(X[0, :, 0], z[12:24] - z[0:12], rtol=1e-6)
    # step k is measured from index 23 - 11 + (k - 1) % 12: the seasonal-naive forecast
    np.testing.assert_allclose(Y[0], z[24:38] - z[[*range(12, 24), 12, 13]], rtol=1e-6)
    assert len(X) == 40 - 12 - 12 - 14 + 1
    window, anchor = last_window(z, 12, centred=True, out=3, seasonal=True)
    np.testing.assert_allclose(window[0, :, 0], z[28:40] - z[16:28], rtol=1e-6)
    np.testing.assert_array_equal(anchor, z[[28, 29, 30]])
