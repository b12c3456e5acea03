"""Calibrate step: Monte Carlo, normal-calibration and POT thresholds at a nominal false-positive rate; writes ``calibration/``.

Thresholds are fitted on what the data kind labels: a series' calibration and POT thresholds on the point scores of
the calibration series (the same window-to-point rule as the test series). The Monte Carlo one is a quantile of
generated samples' scores, so for a model whose samples are not what is labelled (windows, where points are
labelled) it is reported, never used to label (its summary says ``applies_to: windows``). A model without a generator
(the reference detectors) has no Monte Carlo threshold; its summary says why.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
from pydantic import Field, model_validator

from models.errors import GadflowError
from models.registry import load_detector
from models.storage import save_npy, staged_dir
from models.threshold import Calibration, conformal_threshold, mc_threshold, mc_threshold_check, pot_level_problem, pot_threshold

from ..adapters import load_prepared
from ..layout import prepared_dir
from ..settings import Strict

if TYPE_CHECKING:
    from pathlib import Path

    from ..layout import ExperimentLayout
    from ..params import Experiment

log = logging.getLogger(__name__)
NO_GENERATOR = "'{kind}' has no generator, so there are no Monte Carlo samples and no Monte Carlo threshold"


class CalibrateSettings(Strict):
    """How the thresholds are fitted (never on test data)."""

    mc_samples: Annotated[int, Field(ge=100, le=10_000_000)] = 10_000  # samples drawn from G for the Monte Carlo threshold
    nominal_fpr: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.05  # alpha: every threshold is a (1 - alpha) quantile
    label_method: Literal["calibration", "monte_carlo", "pot"] = "calibration"  # which threshold labels predictions
    pot_initial_quantile: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.9  # POT fits the calibration scores' tail above this quantile
    seed: int = 1  # the Monte Carlo samples' noise

    @model_validator(mode="after")
    def _pot_level_below_target(self) -> "CalibrateSettings":
        # Checked when POT labels or its level is set: otherwise POT is only reported, and left out with a warning
        # when nominal_fpr is too large for the default level.
        pot_wanted = self.label_method == "pot" or "pot_initial_quantile" in self.model_fields_set
        problem = pot_level_problem(self.pot_initial_quantile, self.nominal_fpr) if pot_wanted else None
        if problem:
            raise ValueError(f"pot_initial_quantile: {problem}")
        return self


def calibrate(exp: Experiment, layout: ExperimentLayout) -> Path:
    """Fit the thresholds on the calibration split and the model's samples; write threshold.json and the Monte Carlo scores."""
    settings = exp.calibrate
    detector = load_detector(layout.model_dir)
    data = load_prepared(prepared_dir(exp.data))
    calib_scores = data.threshold_scores("calib", detector.score(data.calib, progress=True))
    if detector.capabilities.generator:
        log.info("Monte Carlo: scoring %d generated samples", settings.mc_samples)
        mc_scores = detector.score(detector.sample(settings.mc_samples, seed=settings.seed), progress=True)
        thresholds = {"monte_carlo": mc_threshold(mc_scores, settings.nominal_fpr)}
    else:
        mc_scores, thresholds = np.zeros(0), {}
    # The labelling threshold must exist. POT is reported when computable; the conformal threshold is required
    # too unless POT labels, since POT is there for nominal FPRs too small for the calibration split.
    required = {settings.label_method} | ({"calibration"} if settings.label_method != "pot" else set())
    fits = {
        "calibration": lambda: conformal_threshold(calib_scores, settings.nominal_fpr),
        "pot": lambda: pot_threshold(calib_scores, settings.nominal_fpr, settings.pot_initial_quantile),
    }
    for method, fit in fits.items():
        try:
            thresholds[method] = fit()
        except GadflowError as exc:
            if method in required:
                raise
            log.warning("%s threshold left out: %s", method, exc)
    mc_summary = ({"n": int(mc_scores.size), "mean": float(mc_scores.mean()), "std": float(mc_scores.std()),
                   "min": float(mc_scores.min()), "max": float(mc_scores.max())} if mc_scores.size else
                  {"n": 0, "applicable": False, "reason": NO_GENERATOR.format(kind=detector.kind)})
    if mc_scores.size and not detector.capabilities.monte_carlo_labels:  # generated windows' scores: a window quantile, not one of point scores
        mc_summary["applies_to"] = "windows"
    elif mc_scores.size:  # label-free: does it flag nominal of the (normal) calibration split?
        mc_summary["check"] = check = mc_threshold_check(thresholds["monte_carlo"], calib_scores, settings.nominal_fpr)
        if not check["holds"]:
            if settings.label_method == "monte_carlo":  # refused: nothing is written, the previous calibration stays
                raise GadflowError(f"{exp.name}: {check['reason']}; label with the calibration split instead (calibrate.label_method: calibration)")
            log.warning("Monte Carlo threshold refused (reported, not labelling): %s", check["reason"])
    calibration = Calibration(model_id=detector.model_id, nominal_fpr=settings.nominal_fpr, method=settings.label_method,
                              thresholds=thresholds, calibration_scores=np.sort(calib_scores).tolist(), mc_summary=mc_summary)
    with staged_dir(layout.calibration_dir) as staging:
        calibration.save(staging / layout.threshold.name)
        save_npy(staging / layout.mc_scores.name, mc_scores)
    log.info("thresholds at nominal FPR %g: %s (labelling with %s)", settings.nominal_fpr,
             ", ".join(f"{m} {v:.5g}" for m, v in thresholds.items()), settings.label_method)
    return layout.threshold
