"""Monte Carlo, conformal and POT thresholds, conformal p-values, and the saved Calibration."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from models.errors import GadflowError
from models.threshold import Calibration, conformal_p_values, conformal_threshold, mc_threshold, mc_threshold_check, pot_threshold


# --- Monte Carlo threshold ------------------------------------------------------------------------
def test_mc_threshold_uniform():
    scores = np.random.default_rng(0).random(100_000)
    assert abs(mc_threshold(scores, 0.05) - 0.95) < 0.005
    assert abs(mc_threshold(scores, 0.01) - 0.99) < 0.002


def test_mc_threshold_standard_normal():
    scores = np.random.default_rng(1).standard_normal(100_000)
    assert abs(mc_threshold(scores, 0.05) - 1.6449) < 0.02
    assert abs(mc_threshold(scores, 0.10) - 1.2816) < 0.02


def test_mc_threshold_is_an_observed_score_with_at_most_alpha_above():
    scores = np.random.default_rng(2).permutation(np.arange(1.0, 101.0))
    t = mc_threshold(scores, 0.05)
    assert t == 96.0  # position 0.95 * 99 = 94.05, taken at the next observed value up (index 95)
    assert np.mean(scores > t) <= 0.05
    assert np.mean(scores >= t) > 0.04  # not needlessly conservative


# --- conformal threshold --------------------------------------------------------------------------
def test_conformal_threshold_rank():
    scores = np.random.default_rng(3).permutation(np.arange(1.0, 100.0))  # n = 99
    assert conformal_threshold(scores, 0.05) == 95.0  # ceil(100 * 0.95) = 95th smallest
    assert conformal_threshold(scores, 0.10) == 90.0  # ceil(100 * 0.90)
    assert conformal_threshold(np.arange(1.0, 201.0), 0.05) == 191.0  # ceil(201 * 0.95) = ceil(190.95)


def test_conformal_threshold_smallest_usable_split():
    assert conformal_threshold(np.arange(1.0, 20.0), 0.05) == 19.0  # n = 19: rank ceil(20 * 0.95) = 19
    with pytest.raises(GadflowError, match=r"18 samples is too small.*at least 19"):
        conformal_threshold(np.arange(1.0, 19.0), 0.05)
    with pytest.raises(GadflowError, match="too small"):
        conformal_threshold(np.arange(1.0, 99.0), 0.01)  # n = 98 < 99


@pytest.mark.parametrize("draw", ["uniform", "exponential"])
def test_conformal_false_positive_guarantee(draw):
    """Exchangeable calibration + test scores: P(test > threshold) is within [alpha - 1/(n+1), alpha]."""
    rng = np.random.default_rng(4)
    trials, n, alpha = 2000, 200, 0.05
    sample = rng.random if draw == "uniform" else rng.standard_exponential
    calib, test = sample((trials, n)), sample(trials)
    flagged = np.array([test[i] > conformal_threshold(calib[i], alpha) for i in range(trials)])
    sigma = math.sqrt(alpha * (1 - alpha) / trials)
    assert flagged.mean() <= alpha + 3 * sigma
    assert flagged.mean() >= alpha - 1 / (n + 1) - 3 * sigma


def test_threshold_decision_equals_p_value_decision():
    rng = np.random.default_rng(5)
    calib, test = rng.random(57), rng.random(5000)
    for alpha in (0.05, 0.1, 0.2):
        by_threshold = test > conformal_threshold(calib, alpha)
        by_p_value = conformal_p_values(test, calib) <= alpha
        np.testing.assert_array_equal(by_threshold, by_p_value)


# --- conformal p-values ----------------------------------------------------------------------------
def test_p_values_by_hand():
    calib = np.array([0.3, 0.1, 0.5, 0.2])  # n = 4
    scores = np.array([0.05, 0.1, 0.25, 0.5, 0.9])
    # p = (1 + #{cal >= s}) / 5
    expected = np.array([(1 + 4) / 5, (1 + 4) / 5, (1 + 2) / 5, (1 + 1) / 5, (1 + 0) / 5])
    np.testing.assert_allclose(conformal_p_values(scores, calib), expected)


def test_p_values_match_the_formula_with_ties():
    rng = np.random.default_rng(6)
    calib = rng.integers(0, 10, 40).astype(float)
    scores = rng.integers(-1, 12, 100).astype(float)
    expected = [(1 + np.sum(calib >= s)) / (calib.size + 1) for s in scores]
    np.testing.assert_allclose(conformal_p_values(scores, calib), expected)


# --- non-finite / empty input ----------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores_raise(bad):
    scores = np.r_[np.linspace(0, 1, 100), bad]
    with pytest.raises(GadflowError, match="Monte Carlo scores: 1 non-finite"):
        mc_threshold(scores, 0.05)
    with pytest.raises(GadflowError, match="calibration scores: 1 non-finite"):
        conformal_threshold(scores, 0.05)
    with pytest.raises(GadflowError, match="non-finite"):
        conformal_p_values(np.array([0.5]), scores)


def test_empty_scores_raise():
    for fn in (mc_threshold, conformal_threshold):
        with pytest.raises(GadflowError, match="empty"):
            fn(np.array([]), 0.05)


# --- POT (peaks over threshold) ------------------------------------------------------------------------
def test_pot_recovers_the_exponential_tail():
    scores = np.random.default_rng(10).standard_exponential(200_000)
    # P(S > z) = exp(-z) = 1e-4 at z = ln(1e4); only 20 of the scores lie above it
    assert pot_threshold(scores, 1e-4, 0.98) == pytest.approx(math.log(1e4), rel=0.05)


def test_pot_recovers_a_pareto_tail():
    scores = np.random.default_rng(11).pareto(3.0, 200_000)  # Lomax: P(S > z) = (1 + z)^-3, a GPD with γ = 1/3
    # A heavy tail extrapolates less precisely: the shape's error is amplified by (q n / N_t)^-γ.
    assert pot_threshold(scores, 1e-4, 0.98) == pytest.approx(1e4 ** (1 / 3) - 1, rel=0.10)


@pytest.mark.parametrize("shape", [-0.2, 0.25])
def test_pot_recovers_generalised_pareto_tails(shape):
    from scipy.stats import genpareto

    scores = genpareto.rvs(shape, size=200_000, random_state=13)
    assert pot_threshold(scores, 1e-4, 0.98) == pytest.approx(genpareto.ppf(1 - 1e-4, shape), rel=0.05)


def test_pot_works_below_the_smallest_fpr_the_conformal_threshold_resolves():
    scores = np.random.default_rng(12).standard_exponential(2000)
    with pytest.raises(GadflowError, match="too small for nominal_fpr=0.0001"):
        conformal_threshold(scores, 1e-4)  # needs 9,999 samples
    z = pot_threshold(scores, 1e-4, 0.95)
    assert math.isfinite(z) and z > scores.max()  # extrapolated beyond every observed score
    assert z == pytest.approx(math.log(1e4), rel=0.15)


def test_pot_is_deterministic_and_ignores_the_order_of_the_scores():
    scores = np.random.default_rng(14).standard_exponential(5000)
    z = pot_threshold(scores, 1e-3, 0.95)
    assert pot_threshold(scores, 1e-3, 0.95) == z
    assert pot_threshold(np.random.default_rng(15).permutation(scores), 1e-3, 0.95) == z


def test_pot_refuses_an_initial_level_at_or_above_the_target_quantile():
    scores = np.random.default_rng(16).standard_exponential(1000)
    with pytest.raises(GadflowError, match=r"initial_quantile 0.95 must be below 1 - nominal_fpr = 0.95"):
        pot_threshold(scores, 0.05, 0.95)
    with pytest.raises(GadflowError, match="must be below"):
        pot_threshold(scores, 0.05, 0.99)


def test_pot_needs_enough_excesses():
    scores = np.random.default_rng(17).standard_exponential(50)  # 5 scores above the 0.9 quantile
    with pytest.raises(GadflowError, match=r"5 of 50 calibration scores exceed .* need at least 10 \(about 100 scores\)"):
        pot_threshold(scores, 0.01, 0.9)
    tied = np.r_[np.zeros(900), np.linspace(1.0, 2.0, 100)]  # level 0 at the 0.5 quantile: 100 excesses, fewer than 0.2 x 1000
    with pytest.raises(GadflowError, match="lower initial_quantile"):
        pot_threshold(tied, 0.2, 0.5)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_pot_refuses_non_finite_scores(bad):
    with pytest.raises(GadflowError, match="calibration scores: 1 non-finite"):
        pot_threshold(np.r_[np.linspace(0, 1, 1000), bad], 0.01, 0.9)


# --- Calibration ---------------------------------------------------------------------------------
def make_calibration(model_id: str = "abc123") -> Calibration:
    cal_scores = np.sort(np.random.default_rng(7).random(30))
    return Calibration(
        model_id=model_id,
        nominal_fpr=0.1,
        method="calibration",
        thresholds={"monte_carlo": 0.8123456789012345, "calibration": conformal_threshold(cal_scores, 0.1)},
        calibration_scores=cal_scores.tolist(),
        mc_summary={"n": 1000, "mean": 0.5},
    )


def test_calibration_json_round_trip(tmp_path):
    cal = make_calibration()
    path = tmp_path / "model" / "threshold.json"
    cal.save(path)
    assert json.loads(path.read_text())["model_id"] == "abc123"
    loaded = Calibration.load(path, expected_model_id="abc123")
    assert loaded == cal
    assert loaded.threshold == cal.thresholds["calibration"]
    scores = np.linspace(0, 1, 11)
    np.testing.assert_array_equal(loaded.is_anomaly(scores), scores > cal.threshold)
    np.testing.assert_array_equal(loaded.p_values(scores), cal.p_values(scores))


def test_calibration_method_selects_the_threshold():
    cal = make_calibration()
    cal.method = "monte_carlo"
    assert cal.threshold == 0.8123456789012345
    assert cal.is_anomaly(np.array([0.81, 0.82])).tolist() == [False, True]


def test_calibration_of_another_model_is_refused(tmp_path):
    path = tmp_path / "threshold.json"
    make_calibration("model-a").save(path)
    with pytest.raises(GadflowError, match="model-a.*model-b"):
        Calibration.load(path, expected_model_id="model-b")


def test_calibration_bad_files(tmp_path):
    with pytest.raises(GadflowError, match="not found"):
        Calibration.load(tmp_path / "absent.json")
    (tmp_path / "garbage.json").write_text("{not json")
    with pytest.raises(GadflowError, match="garbage.json"):
        Calibration.load(tmp_path / "garbage.json")
    (tmp_path / "partial.json").write_text(json.dumps({"model_id": "x"}))
    with pytest.raises(GadflowError, match="partial.json"):
        Calibration.load(tmp_path / "partial.json")


def test_non_finite_scores_are_flagged_and_get_the_smallest_p_value():
    cal = make_calibration()
    scores = np.array([np.nan, -1e9])
    assert cal.is_anomaly(scores).tolist() == [True, False]
    p = cal.p_values(scores)
    assert p[0] == pytest.approx(1 / (len(cal.calibration_scores) + 1))


def test_monte_carlo_check_refuses_a_threshold_that_misses_its_fpr_beyond_sampling_noise():
    normals = np.arange(1000, dtype=float)  # calibration scores 0 .. 999
    held = mc_threshold_check(949.5, normals, 0.05)  # flags 50 of 1000: exactly nominal
    assert held["holds"] and held["calibration_fpr"] == 0.05 and "reason" not in held
    assert mc_threshold_check(967.5, normals, 0.05)["holds"]  # 3.2 %: within 2 points
    nothing = mc_threshold_check(1e9, normals, 0.05)  # G's samples score above every normal: flags none
    assert not nothing["holds"] and "flags 0.0% of the 1000 normal calibration samples against a nominal 5.0%" in nothing["reason"]
    small = mc_threshold_check(183.5, np.arange(200, dtype=float), 0.05)  # 16 of 200 = 8 %: 3 points off, within a small split's noise
    assert small["holds"] and small["p_value"] > 0.05
    large = mc_threshold_check(1839.5, np.arange(2000, dtype=float), 0.05)  # the same 8 % on 2,000 normals is a real miss
    assert not large["holds"] and large["p_value"] < 1e-6
