"""The report's measures beside the ranking metrics: the paper protocol, the validation split, the search's convergence."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .metrics import ranking_metrics, threshold_metrics

log = logging.getLogger(__name__)


def interpretation(name: str, m: dict, method: str) -> str:
    op = m["thresholds"][method]
    return (
        f"{name}: at the {method} threshold {op['threshold']:.4g} (nominal FPR {m['nominal_fpr']:.1%}) "
        f"{op['tp'] + op['fp']} of {m['counts']['test']} test samples are flagged; "
        f"recall {op['recall']:.3f} at precision {op['precision']:.3f}, achieved FPR on test normals {op['fpr']:.1%}; "
        f"AUROC {m['auroc']:.3f}."
    )


UNFINISHED_SEARCH_RATIO = 0.25
PAPER_PROTOCOL = "paper protocol (EGBAD/ALAD/DAGMM): the top {:.0%} of test scores are flagged; the threshold uses test statistics"


def paper_protocol(labels: np.ndarray, scores: np.ndarray, top_fraction: float) -> dict:
    """The published KDD99 protocol: flag scores >= the (1 − top_fraction) percentile of the test scores.
    For comparison with published numbers only: the threshold is a test statistic."""
    threshold = float(np.percentile(scores, 100 * (1 - top_fraction)))
    return {"name": PAPER_PROTOCOL.format(top_fraction), "uses_test_statistics": True, "top_fraction": top_fraction,
            "threshold": threshold, **threshold_metrics(labels, scores >= threshold)}


NO_VALIDATION = "this dataset has no labelled anomalies outside its test split (training data are normal only)"


def validation_metrics(calib_scores: np.ndarray, anomaly_scores_file: Path) -> dict:
    """AUROC / AUPRC of the normal calibration split against the held-out validation anomalies (training data of the
    anomaly classes). Neither was trained on and neither is test data, so the promotion gate may select on it.
    (The threshold was fitted on the calibration split; ranking metrics do not depend on it.)"""
    if not Path(anomaly_scores_file).is_file():
        return {"available": False, "reason": NO_VALIDATION}
    anomaly_scores = np.load(anomaly_scores_file)
    labels = np.concatenate([np.zeros(len(calib_scores), dtype=np.int8), np.ones(len(anomaly_scores), dtype=np.int8)])
    return {"available": True, "normal": "calibration split", "anomalies": "held-out training samples of the anomaly classes",
            "n_normal": int(len(calib_scores)), "n_anomalous": int(len(anomaly_scores)),
            **ranking_metrics(labels, np.concatenate([calib_scores, anomaly_scores]))}


def search_convergence(generated_losses: np.ndarray, normal_losses: np.ndarray) -> dict:
    """Label-free check of a latent search: G's own samples are reachable, so the loss left on them is
    search error. If it is a large share of the loss on normal calibration data, scores measure an unfinished
    search as much as a distance. That is a fact about the search, not a verdict on the scores: on MNIST a more
    finished search ranked anomalies worse (benchmarks/search_budget.py, docs/benchmarks.md). Uses no test data."""
    ratio = float(np.mean(generated_losses) / max(float(np.mean(normal_losses)), 1e-12))
    if ratio > UNFINISHED_SEARCH_RATIO:
        log.warning("latent search unfinished: the loss left on G's own samples is %.0f%% of the loss on normal calibration "
                    "data, so the scores measure the search as well as the distance; a larger budget is not necessarily better "
                    "(benchmarks/search_budget.py compares budgets)", 100 * ratio)
    return {"generated_to_normal_loss_ratio": ratio, "unfinished": ratio > UNFINISHED_SEARCH_RATIO}
