"""Per-series validation, champion selection and intervals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqcast import forecast as fc
from seqcast import lake
from seqcast.config import model_config_for
from seqcast.evaluate import seasonal_naive
from seqcast.records import SeriesRef


def test_interval_widens_with_the_step_and_is_relative_for_positive_series() -> None:
    actual = np.full(12, 100.0)
    predicted = actual * np.exp(np.linspace(-0.1, 0.1, 12))
    yhat = np.full(12, 200.0)
    lower, upper = fc.conformal_interval(yhat, actual, predicted, 0.8)
    widths = upper - lower
    assert np.all(np.diff(widths) > 0)
    np.testing.assert_allclose(upper / yhat, yhat / lower)  # symmetric in log space
    assert np.all(lower > 0)


def test_interval_is_additive_when_values_can_be_negative() -> None:
    actual = np.array([-1.0, 2.0, -3.0, 4.0])
    predicted = actual + np.array([0.5, -0.5, 1.0, -1.0])
    lower, upper = fc.conformal_interval(np.zeros(4), actual, predicted, 0.5)
    np.testing.assert_allclose(-lower, upper)
    assert upper[0] > 0


def test_interval_quantile_covers_the_level_of_normalised_holdout_errors() -> None:
    rng = np.random.default_rng(3)
    errors = rng.normal(0, 1, 12) * np.sqrt(np.arange(1, 13))
    actual = np.full(12, 50.0) + errors
    lower, upper = fc.conformal_interval(np.full(12, 50.0), actual, np.full(12, 50.0), 0.8)
    inside = (actual >= lower) & (actual <= upper)
    assert 0.75 <= inside.mean() <= 0.9


@pytest.fixture
def air_ref(air: pd.DataFrame, tmp_path: Path) -> SeriesRef:
    (ref,) = lake.snapshot(air.assign(is_filled=False), tmp_path / "lake")
    return ref


def test_default_model_beats_seasonal_naive_on_the_1960_holdout(air_ref: SeriesRef, tmp_path: Path) -> None:
    (validation,) = fc.validate_many([air_ref], [model_config_for("lstm")], 12, tmp_path / "models")
    naive, lstm = (validation.candidates[k].scores for k in ("seasonal_naive", "lstm"))
    assert lstm.mase < naive.mase
    assert validation.holdout_start == "1960-01-01" and validation.holdout_end == "1960-12-01"


def test_the_champion_is_the_best_holdout_candidate(air_ref: SeriesRef, tmp_path: Path) -> None:
    configs = [model_config_for("rnn", epochs=30), model_config_for("gru", epochs=30)]
    (validation,) = fc.validate_many([air_ref], configs, 12, tmp_path / "models")
    (fit,) = fc.train_many([air_ref], configs, tmp_path / "models", 12)
    published = fc.forecast_series(air_ref, validation, fit, 12, fc.calibrate([validation], (0.8, 0.95)))
    scores = {k: c.scores.mase for k, c in validation.candidates.items()}
    assert published.champion == min(scores, key=lambda k: scores[k]) != "seasonal_naive"
    champion_rows = [r for r in published.rows if r.is_champion]
    assert len(champion_rows) == 12 and {r.model_kind for r in champion_rows} == {published.champion}
    assert [r.period for r in champion_rows][::11] == ["1961-01-01", "1961-12-01"]


def test_when_seasonal_naive_wins_seasonal_naive_is_published(tmp_path: Path) -> None:
    # An exactly repeating year: last year's values are perfect, and no network matches them exactly.
    periods = pd.date_range("2010-01-01", periods=96, freq="MS").astype("datetime64[us]")
    values = np.tile([10.0, 12, 15, 14, 13, 17, 21, 22, 18, 14, 11, 12], 8)
    frame = pd.DataFrame({"series_id": "repeat", "period": periods, "value": values, "is_filled": False})
    (ref,) = lake.snapshot(frame, tmp_path / "lake")
    configs = [model_config_for("rnn", epochs=5)]
    (validation,) = fc.validate_many([ref], configs, 12, tmp_path / "models")
    assert validation.candidates["seasonal_naive"].scores.mae == 0 < validation.candidates["rnn"].scores.mae
    assert validation.candidates["naive"].scores.mae > 0
    (fit,) = fc.train_many([ref], configs, tmp_path / "models", 12)
    published = fc.forecast_series(ref, validation, fit, 12, fc.calibrate([validation], (0.8, 0.95)))
    assert published.champion == "seasonal_naive"
    champion = [r for r in published.rows if r.is_champion]
    np.testing.assert_array_equal([r.yhat for r in champion], seasonal_naive(values, 12))
    assert {r.model_kind for r in champion} == {"seasonal_naive"} and champion[0].model_id is None


def test_stored_models_are_reused_for_the_same_data_and_config(air_ref: SeriesRef, tmp_path: Path) -> None:
    configs = [model_config_for("gru", epochs=5)]
    (first,) = fc.train_many([air_ref], configs, tmp_path / "models", 12)
    (again,) = fc.train_many([air_ref], configs, tmp_path / "models", 12)
    assert first.models["gru"].trained and not again.models["gru"].trained
    assert first.models["gru"].model_id == again.models["gru"].model_id
    assert first.forecasts == again.forecasts
    (other,) = fc.train_many([air_ref], [model_config_for("gru", epochs=6)], tmp_path / "models", 12)
    assert other.models["gru"].trained and other.models["gru"].model_id != first.models["gru"].model_id


def test_an_altered_model_file_is_retrained_never_published(air_ref: SeriesRef, tmp_path: Path) -> None:
    configs = [model_config_for("fake")]
    (first,) = fc.train_many([air_ref], configs, tmp_path / "models", 12)
    path = Path(first.models["fake"].artifact_path)
    data = bytearray(path.read_bytes())
    data[-300:-236] = bytes(b ^ 0x5A for b in data[-300:-236])  # 64 bytes flipped
    path.write_bytes(bytes(data))
    (again,) = fc.train_many([air_ref], configs, tmp_path / "models", 12)
    assert again.models["fake"].trained  # not reused
    assert again.forecasts == first.forecasts  # what was published before, from a model trained anew
    assert again.models["fake"].artifact_sha256 == first.models["fake"].artifact_sha256


def _ref(tmp_path: Path, n: int, name: str = "short", values: np.ndarray | None = None) -> SeriesRef:
    if values is None:
        values = 100 + 10 * np.sin(np.arange(n) / 12 * 2 * np.pi) + np.arange(n)
    periods = pd.date_range("2010-01-01", periods=n, freq="MS").astype("datetime64[us]")
    frame = pd.DataFrame({"series_id": name, "period": periods, "value": values, "is_filled": False})
    (ref,) = lake.snapshot(frame, tmp_path / "lake")
    return ref


#: The first year of a souvenir shop's monthly sales: a December twelve times January's.
FIRST_YEAR = np.array([1664.81, 2397.53, 2840.71, 3547.29, 3752.96, 3714.74, 4349.61, 3566.34, 5021.82, 6423.48,
                       7600.6, 19756.21])  # fmt: skip


def test_a_forecast_that_runs_away_from_its_history_is_left_out(tmp_path: Path) -> None:
    # AutoCES on this one year forecasts millions within two years; its combination with ETS would be published.
    ref = _ref(tmp_path, 12, "first-year", FIRST_YEAR)
    configs = [model_config_for("ets", horizon=24), model_config_for("ces", horizon=24)]
    validations = fc.validate_many([ref], configs, 24, tmp_path / "models")
    fits = fc.train_many([ref], configs, tmp_path / "models", 24)
    ces = fc.fit_or_reuse_many([(FIRST_YEAR, ref.model_key)], configs[1], "final", tmp_path / "models")[0][0]
    assert ces.predict(24).max() > 100 * FIRST_YEAR.max()  # what is left out
    assert "ces" not in fits[0].forecasts and "ets" in fits[0].forecasts
    validations, fits = fc.add_combination(validations, fits, ["ets", "ces"])
    published = fc.forecast_series(ref, validations[0], fits[0], 24, fc.calibrate(validations, (0.8, 0.95)))
    assert published.champion == "ets" and {r.model_kind for r in published.rows} == {"ets", "naive", "seasonal_naive"}
    champion = np.array([r.yhat for r in published.rows if r.is_champion])
    assert len(champion) == 24 and np.all(champion < 2 * FIRST_YEAR.max())


def test_plausible_forecasts_stay_within_the_moves_the_history_made() -> None:
    months = np.arange(60)
    trend = 100 + 3.0 * months
    assert fc.plausible(trend, 100 + 3.0 * np.arange(60, 84))  # the trend carried on
    assert fc.plausible(trend, np.full(24, trend[-1]))
    seasonal = 100 + 20 * np.sin(months / 12 * 2 * np.pi)
    assert fc.plausible(seasonal, seasonal[-12:])  # last year again
    largest = np.max(np.abs(np.diff(trend)))
    away = trend[-1] + fc.PLAUSIBLE_MOVES * largest * 12 * 1.01
    assert not fc.plausible(trend, np.r_[trend[-1], away])  # month 2 counts a season's moves, and is beyond them
    assert fc.plausible(trend, np.r_[trend[-1], trend[-1] + fc.PLAUSIBLE_MOVES * largest * 12 * 0.99])
    assert not fc.plausible(trend, [trend[-1], np.nan])
    assert fc.plausible(np.full(30, 5.0), [5.0, 6.0]) and fc.plausible([5.0], [7.0])  # nothing to measure by


@pytest.mark.parametrize(
    ("n", "champion", "validated"),
    [
        (1, "naive", False),  # a single observation still gets a naive forecast
        (10, "combination", False),  # too short to hold 12 months out: the first its history allows
        # One month before the holdout validates naive alone, but the whole history allows the combination.
        (13, "combination", True),
        (20, "combination", True),  # 8 months before the holdout: too few for seasonal naive
        (30, None, True),  # ets and ces validated on 18 months: their combination competes
    ],
)
def test_every_series_gets_the_model_its_length_allows(
    tmp_path: Path, n: int, champion: str | None, validated: bool
) -> None:
    ref = _ref(tmp_path, n)
    configs = [model_config_for("ets"), model_config_for("ces")]
    validations = fc.validate_many([ref], configs, 12, tmp_path / "models")
    fits = fc.train_many([ref], configs, tmp_path / "models", 12)
    validations, fits = fc.add_combination(validations, fits, ["ets", "ces"])
    published = fc.forecast_series(ref, validations[0], fits[0], 12, fc.calibrate(validations, (0.8, 0.95)))
    assert bool(validations[0].candidates) is validated
    if champion is None:
        candidates = validations[0].candidates
        assert {"ets", "ces", "combination", "naive", "seasonal_naive"} <= set(candidates)
        assert published.champion in candidates
    else:
        assert published.champion == champion
        if validated:  # chosen by what the whole history allows, and the reason says why
            assert f"{n} months: holding 12 out leaves too few to fit" in published.reason
    rows = [r for r in published.rows if r.is_champion]
    assert len(rows) == 12 and all(np.isfinite(r.yhat) for r in rows)
    assert all(r.yhat_lower_outer <= r.yhat_lower <= r.yhat <= r.yhat_upper <= r.yhat_upper_outer for r in rows)
    assert published.reason.startswith(published.champion)


def test_the_combination_wins_unless_a_candidate_is_clearly_better() -> None:
    from seqcast.records import Candidate, Scores

    def candidate(kind: str, mase: float) -> Candidate:
        return Candidate(kind, Scores(mase, mase, 1.0, 1.0, mase), (1.0,), None)

    close = {"combination": candidate("combination", 1.0), "ets": candidate("ets", 0.6)}
    assert fc.champion_of(close, 0.5)[0] == "combination"  # 40% better is not clearly better
    clear = {"combination": candidate("combination", 1.0), "ets": candidate("ets", 0.4)}
    assert fc.champion_of(clear, 0.5)[0] == "ets"
    assert fc.champion_of({"ets": candidate("ets", 0.9), "ces": candidate("ces", 0.8)}, 0.5)[0] == "ces"


def test_intervals_are_calibrated_across_series_per_step() -> None:
    from seqcast.records import Candidate, Scores, Validation

    rng = np.random.default_rng(0)
    validations = []
    for i in range(200):
        actual = np.full(12, 100.0)
        prediction = actual * np.exp(rng.normal(0, 0.02, 12) * np.sqrt(np.arange(1, 13)))
        candidates = {"ets": Candidate("ets", Scores(1, 1, 1, 1, 1), tuple(prediction), None)}
        validations.append(Validation(f"s{i}", "2020-01-01", "2020-12-01", tuple(actual), candidates, 0.02, 1.0))
    calibration = fc.calibrate(validations, (0.8, 0.95))
    inner, outer = np.array(calibration.inner["ets"]), np.array(calibration.outer["ets"])
    assert calibration.series["ets"] == 200 and np.all(outer > inner)
    # Errors grow with the square root of the step (in spreads): so do the calibrated half-widths.
    ratio = inner / np.sqrt(np.arange(1, 13))
    assert 0.8 < ratio.min() / ratio.max() <= 1 and 1.15 < ratio.mean() < 1.4  # about 1.28, a normal 80%


@pytest.mark.parametrize("calibrating_series", [300, 30])  # per-step quantiles, and the pooled small-run rule
def test_calibrated_intervals_cover_fresh_series_at_their_levels(calibrating_series: int) -> None:
    """Calibrated on some series' holdout errors, the intervals cover new series from the same process at about
    their nominal levels, at every step: out of sample, with series of different spreads."""
    from seqcast.records import Candidate, Fit, Scores, Validation

    rng = np.random.default_rng(11)
    steps = np.sqrt(np.arange(1, 13))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        spreads = rng.uniform(0.01, 0.2, n)
        return spreads, 100.0 * np.exp(spreads[:, None] * rng.normal(0, 1, (n, 12)) * steps)

    spreads, actuals = draw(calibrating_series)
    predicted = np.full(12, 100.0)
    validations = [
        Validation(
            f"s{i}",
            "2020-01-01",
            "2020-12-01",
            tuple(actuals[i]),
            {"ets": Candidate("ets", Scores(1, 1, 1, 1, 1), tuple(predicted), None)},
            spreads[i],
            1.0,
        )
        for i in range(calibrating_series)
    ]
    calibration = fc.calibrate(validations, (0.8, 0.95))
    fresh_spreads, fresh = draw(4000)
    for level_index, level in enumerate((0.8, 0.95)):
        inside = np.empty_like(fresh, dtype=bool)
        for i, s in enumerate(fresh_spreads):
            fit = Fit(f"new{i}", {}, {"ets": tuple(predicted)}, s, True)
            lower, upper = fc.interval(predicted, "ets", fit, validations[0], calibration, level_index)
            inside[i] = (fresh[i] >= lower) & (fresh[i] <= upper)
        tolerance = 0.03 if calibrating_series >= fc.PER_STEP_SERIES else 0.06
        assert abs(inside.mean() - level) < tolerance
        assert np.all(np.abs(inside.mean(axis=0) - level) < tolerance + 0.04)  # every step, not just on average
