"""Calibrate step: Monte Carlo, normal-calibration and POT thresholds at a nominal false-positive rate.

Time series: the calibration and POT thresholds are fitted on the point scores of the calibration series
(the same window-to-point rule as the test series); the Monte Carlo one on generated windows' scores, so
it does not apply to point labels (its summary says ``applies_to: windows``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NONE

from models import Calibration, load_detector
from models.errors import GadflowError
from models.threshold import THRESHOLD_FILE, conformal_threshold, mc_threshold, pot_threshold

from .config import CalibrateParams
from .files import save_npy
from .prepare import load_prepared

log = logging.getLogger(__name__)

MC_SCORES_FILE = "mc_scores.npy"


@task(cache_policy=NONE, persist_result=False)
def calibrate_model(params: CalibrateParams, model_dir: Path, data_dir: Path, out_dir: Path) -> Path:
    """Fit the thresholds (never on test data), save threshold.json beside the weights; return its path."""
    detector = load_detector(model_dir)
    data = load_prepared(data_dir)
    if data.kind == "series" and params.label_method == "monte_carlo":  # params.yaml refuses it too; this covers direct calls
        raise GadflowError("label_method monte_carlo: a time series labels time points, and the Monte Carlo threshold is a quantile "
                           "of generated windows' scores; use 'calibration' or 'pot'")
    calib_scores = detector.score(data.calib, progress=True)
    if data.kind == "series":  # thresholds apply to time points: the calibration series' point scores
        from .series_scores import covered_points, point_scores_by_series

        calib_scores = covered_points(point_scores_by_series(data, "calib", calib_scores))
    log.info("Monte Carlo: scoring %d generated samples", params.mc_samples)
    mc_scores = detector.score(detector.sample(params.mc_samples, seed=params.seed), progress=True)
    thresholds = {"monte_carlo": mc_threshold(mc_scores, params.nominal_fpr)}
    # The labelling threshold must exist. POT is reported when computable; the conformal threshold is required
    # too unless POT labels, since POT is there for nominal FPRs too small for the calibration split.
    required = {params.label_method} | ({"calibration"} if params.label_method != "pot" else set())
    fits = {
        "calibration": lambda: conformal_threshold(calib_scores, params.nominal_fpr),
        "pot": lambda: pot_threshold(calib_scores, params.nominal_fpr, params.pot_initial_quantile),
    }
    for method, fit in fits.items():
        try:
            thresholds[method] = fit()
        except GadflowError as exc:
            if method in required:
                raise
            log.warning("%s threshold left out: %s", method, exc)
    mc_summary = {
        "n": int(mc_scores.size),
        "mean": float(mc_scores.mean()),
        "std": float(mc_scores.std()),
        "min": float(mc_scores.min()),
        "max": float(mc_scores.max()),
    }
    if data.kind == "series":  # generated windows' scores: a window quantile, not one of point scores
        mc_summary["applies_to"] = "windows"
    calibration = Calibration(
        model_id=detector.model_id,
        nominal_fpr=params.nominal_fpr,
        method=params.label_method,
        thresholds=thresholds,
        calibration_scores=np.sort(calib_scores).tolist(),
        mc_summary=mc_summary,
    )
    calibration.save(model_dir / THRESHOLD_FILE)
    save_npy(out_dir / "calibration" / MC_SCORES_FILE, mc_scores)
    log.info(
        "thresholds at nominal FPR %g: %s (labelling with %s)",
        params.nominal_fpr, ", ".join(f"{m} {v:.5g}" for m, v in thresholds.items()), params.label_method,
    )
    return model_dir / THRESHOLD_FILE
