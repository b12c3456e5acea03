"""Thresholds and conformal p-values. Scores are 'higher = more anomalous' everywhere.

Label-free thresholds at a nominal false-positive rate alpha:
- Monte Carlo: the (1 - alpha) quantile of the scores of N samples drawn from the generator;
- calibration: the conformal (1 - alpha) quantile of the scores of a held-out normal split;
- pot: peaks over threshold, a generalised Pareto tail fitted to that same normal split.
All are fitted on model samples or normal calibration data only, never on test data, and
saved as JSON next to the weights so they travel with the model.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from .errors import GadflowError

ThresholdMethod = Literal["monte_carlo", "calibration", "pot"]
POT_MIN_EXCESSES = 10  # fewest scores above the POT level that a Pareto fit is trusted on


def mc_threshold(mc_scores: np.ndarray, nominal_fpr: float) -> float:
    """(1 - alpha) empirical quantile of Monte Carlo scores (the next observed value up)."""
    scores = _finite_1d(mc_scores, "Monte Carlo scores")
    return float(np.quantile(scores, 1.0 - nominal_fpr, method="higher"))


MC_FPR_TOLERANCE = 0.02  # the Monte Carlo threshold is refused when it misses its FPR by more than this ...
MC_CHECK_SIGNIFICANCE = 0.01  # ... and the calibration split shows it beyond sampling noise (two-sided exact binomial test)


def mc_threshold_check(threshold: float, calibration_scores: np.ndarray, nominal_fpr: float) -> dict:
    """Whether a Monte Carlo threshold holds its false-positive rate on real normals, without test labels.

    The threshold is a quantile of *generated* samples' scores, so it holds only when G's samples score like real
    normals. The normal calibration split measures that directly: the share of it above the threshold estimates
    the threshold's FPR on new normals. The threshold is refused when that share misses nominal by more than
    ``MC_FPR_TOLERANCE`` and a two-sided exact binomial test rejects "the FPR is nominal" at ``MC_CHECK_SIGNIFICANCE``
    (so a split of a few hundred normals does not refuse a threshold on sampling noise alone).
    """
    from scipy.stats import binomtest

    scores = _finite_1d(calibration_scores, "calibration scores")
    flagged = int((scores > threshold).sum())
    fpr = flagged / scores.size
    p_value = float(binomtest(flagged, scores.size, nominal_fpr).pvalue)
    holds = abs(fpr - nominal_fpr) <= MC_FPR_TOLERANCE or p_value >= MC_CHECK_SIGNIFICANCE
    check = {"calibration_fpr": fpr, "calibration_n": int(scores.size), "p_value": p_value, "tolerance": MC_FPR_TOLERANCE, "holds": holds}
    if not holds:
        check["reason"] = (f"the Monte Carlo threshold flags {fpr:.1%} of the {scores.size} normal calibration samples against a nominal "
                           f"{nominal_fpr:.1%} (binomial p = {p_value:.2g}): the generator's samples do not score like real normals, "
                           f"so it would not hold its false-positive rate")
    return check


def conformal_threshold(calibration_scores: np.ndarray, nominal_fpr: float) -> float:
    """The ceil((n + 1)(1 - alpha))-th smallest calibration score.

    For exchangeable normal data, P(score > threshold) <= alpha: flagging 'score > threshold'
    is the same decision as 'p-value <= alpha' with the p-value below.
    """
    scores = np.sort(_finite_1d(calibration_scores, "calibration scores"))
    n = scores.size
    rank = math.ceil((n + 1) * (1.0 - nominal_fpr))
    if rank > n:
        raise GadflowError(
            f"calibration split of {n} samples is too small for nominal_fpr={nominal_fpr}: "
            f"need at least {math.ceil(1 / nominal_fpr) - 1} samples"
        )
    return float(scores[rank - 1])


def pot_threshold(calibration_scores: np.ndarray, nominal_fpr: float, initial_quantile: float) -> float:
    """Peaks over threshold (Siffer et al., KDD 2017, the batch POT step of SPOT).

    t = the ``initial_quantile`` empirical quantile of the normal calibration scores; the N_t excesses
    y = s - t of the scores s > t are fitted by a generalised Pareto distribution (location 0, shape γ,
    scale σ, maximum likelihood); with q = nominal_fpr and n scores, the threshold is

        z = t + (σ / γ) · ((q · n / N_t)^(-γ) - 1),   or   z = t - σ · ln(q · n / N_t)   as γ -> 0,

    the score exceeded with probability q under the fitted tail. The point of POT: it extrapolates the
    tail, so it works at nominal FPRs smaller than the calibration split resolves empirically (the
    conformal threshold needs n >= 1/alpha - 1 samples; POT needs about 10 / (1 - initial_quantile)).
    """
    from scipy.stats import genpareto  # here, not at the top: the served model loads this module without scipy

    scores = _finite_1d(calibration_scores, "calibration scores")
    problem = pot_level_problem(initial_quantile, nominal_fpr)
    if problem:
        raise GadflowError(f"POT: {problem}")
    n = scores.size
    t = float(np.quantile(scores, initial_quantile))
    excesses = np.sort(scores[scores > t] - t)  # sorted: the fit does not depend on the order of the scores
    if excesses.size < POT_MIN_EXCESSES:
        raise GadflowError(
            f"POT: {excesses.size} of {n} calibration scores exceed the initial_quantile {initial_quantile:g} level; "
            f"need at least {POT_MIN_EXCESSES} (about {math.ceil(round(POT_MIN_EXCESSES / (1.0 - initial_quantile), 6))} scores)"
        )
    ratio = nominal_fpr * n / excesses.size  # the target tail probability, relative to the share above t
    if ratio >= 1.0:  # ties at t can leave fewer excesses than the quantile promises
        raise GadflowError(
            f"POT: only {excesses.size} of {n} calibration scores exceed the initial level, fewer than "
            f"nominal_fpr x n = {nominal_fpr * n:.3g}; lower initial_quantile"
        )
    gamma, _, sigma = genpareto.fit(excesses, floc=0.0)
    if abs(gamma) < 1e-9:
        z = t - sigma * math.log(ratio)
    else:
        z = t + (sigma / gamma) * (ratio ** (-gamma) - 1.0)
    if not math.isfinite(z):
        raise GadflowError(f"POT: the generalised Pareto fit failed (shape {gamma:.3g}, scale {sigma:.3g})")
    return float(z)


def pot_level_problem(initial_quantile: float, nominal_fpr: float) -> str | None:
    """Why POT cannot fit at this level for this FPR (None when it can): the tail is fitted above the level and
    extrapolated down to the nominal FPR, so the level must lie below 1 − nominal_fpr."""
    if initial_quantile < 1.0 - nominal_fpr:
        return None
    return (f"initial_quantile {initial_quantile:g} must be below 1 - nominal_fpr = {1.0 - nominal_fpr:g} "
            "(the tail is fitted above that level and extrapolated to the nominal FPR)")


def conformal_p_values(scores: np.ndarray, calibration_scores: np.ndarray) -> np.ndarray:
    """p(x) = (1 + #{calibration scores >= s(x)}) / (n + 1), in (0, 1]; small = anomalous."""
    cal = np.sort(_finite_1d(calibration_scores, "calibration scores"))
    n_at_least = cal.size - np.searchsorted(cal, np.asarray(scores, dtype=np.float64), side="left")
    return (1.0 + n_at_least) / (cal.size + 1.0)


@dataclass
class Calibration:
    """A fitted threshold set for one model, saved as ``threshold.json`` next to the weights."""

    model_id: str  # the detector's fingerprint: a file from another model is refused
    nominal_fpr: float
    method: ThresholdMethod  # which threshold labels predictions
    thresholds: dict[str, float]  # method -> threshold
    calibration_scores: list[float] = field(repr=False)  # sorted normal-split scores, for p-values
    mc_summary: dict[str, float | str] = field(default_factory=dict)  # series: applies_to 'windows'

    @property
    def threshold(self) -> float:
        return self.thresholds[self.method]

    def is_anomaly(self, scores: np.ndarray) -> np.ndarray:
        """score > threshold; a non-finite score is flagged too (its p-value is the smallest, as well)."""
        return ~(np.asarray(scores, dtype=np.float64) <= self.threshold)

    def p_values(self, scores: np.ndarray) -> np.ndarray:
        return conformal_p_values(scores, np.asarray(self.calibration_scores))

    def save(self, path: Path) -> None:
        from .storage import atomic_write_text

        atomic_write_text(path, json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path, expected_model_id: str | None = None) -> "Calibration":
        try:
            raw = json.loads(Path(path).read_text())
            cal = cls(**raw)
        except FileNotFoundError:
            raise GadflowError(f"{path}: threshold file not found") from None
        except (json.JSONDecodeError, TypeError) as exc:
            raise GadflowError(f"{path}: not a gadflow threshold file ({exc})") from None
        if expected_model_id is not None and cal.model_id != expected_model_id:
            raise GadflowError(
                f"{path}: threshold belongs to model {cal.model_id}, not to the loaded model {expected_model_id}"
            )
        return cal


def _finite_1d(values: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise GadflowError(f"{what}: empty")
    if not np.isfinite(arr).all():
        raise GadflowError(f"{what}: {int((~np.isfinite(arr)).sum())} non-finite values")
    return arr
