"""Calibrate step: Monte Carlo and normal-calibration thresholds at a nominal false-positive rate.

Time series: the calibration threshold is fitted on the point scores of the calibration series (the
same window-to-point rule as the test series); the Monte Carlo one on generated windows' scores.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NONE

from models import Calibration, load_detector
from models.threshold import THRESHOLD_FILE, conformal_threshold, mc_threshold

from .config import CalibrateParams
from .files import save_npy
from .prepare import load_prepared

log = logging.getLogger(__name__)

MC_SCORES_FILE = "mc_scores.npy"


@task(cache_policy=NONE, persist_result=False)
def calibrate_model(params: CalibrateParams, model_dir: Path, data_dir: Path, out_dir: Path) -> Path:
    """Fit both thresholds (never on test data), save threshold.json beside the weights; return its path."""
    detector = load_detector(model_dir)
    data = load_prepared(data_dir)
    calib_scores = detector.score(np.asarray(data.calib), progress=True)
    if data.kind == "series":  # thresholds apply to time points: the calibration series' point scores
        from .series_scores import covered_points, point_scores_by_series

        calib_scores = covered_points(point_scores_by_series(data, "calib", calib_scores))
    log.info("Monte Carlo: scoring %d generated samples", params.mc_samples)
    mc_scores = detector.score(detector.sample(params.mc_samples, seed=params.seed), progress=True)
    calibration = Calibration(
        model_id=detector.model_id,
        nominal_fpr=params.nominal_fpr,
        method=params.label_method,
        thresholds={
            "monte_carlo": mc_threshold(mc_scores, params.nominal_fpr),
            "calibration": conformal_threshold(calib_scores, params.nominal_fpr),
        },
        calibration_scores=np.sort(calib_scores).tolist(),
        mc_summary={
            "n": int(mc_scores.size),
            "mean": float(mc_scores.mean()),
            "std": float(mc_scores.std()),
            "min": float(mc_scores.min()),
            "max": float(mc_scores.max()),
        },
    )
    calibration.save(model_dir / THRESHOLD_FILE)
    save_npy(out_dir / "calibration" / MC_SCORES_FILE, mc_scores)
    log.info(
        "thresholds at nominal FPR %.3f: monte_carlo %.5g, calibration %.5g (labelling with %s)",
        params.nominal_fpr, calibration.thresholds["monte_carlo"], calibration.thresholds["calibration"], params.label_method,
    )
    return model_dir / THRESHOLD_FILE
