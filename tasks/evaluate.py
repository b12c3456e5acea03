"""Evaluate step: metrics at each threshold, ranking metrics, figures and a summary."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NONE
from sklearn.metrics import precision_recall_curve, roc_curve

from models import Calibration, load_detector
from models.threshold import THRESHOLD_FILE

from .calibrate import MC_SCORES_FILE
from .config import EvaluateParams
from .files import atomic_write_text
from .metrics import ranking_metrics, threshold_metrics
from .plots import anomaly_map_grid, image_grid, pr_plot, roc_plot, score_histogram, search_trajectory
from .prepare import load_prepared
from .score import POINTS_FILE, VALIDATION_SCORES_FILE

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
SUMMARY_FILE = "summary.json"
THRESHOLD_METRICS = ("precision", "recall", "f1", "fpr", "tp", "fp", "fn", "tn")  # tasks.metrics.threshold_metrics' keys
MC_ON_POINTS = ("the Monte Carlo threshold is a quantile of generated windows' scores; "
                "a time series is labelled on points, so it has no point metrics")


def _curve_csv(path: Path, frame: pd.DataFrame, max_points: int = 500) -> None:
    """Thinned curve table for `dvc plots show` (full curves are in the PNGs)."""
    step = max(1, len(frame) // max_points)
    atomic_write_text(path, frame.iloc[::step].to_csv(index=False, float_format="%.6g"))


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
    search error. If it is a large share of the loss on normal calibration data, scores mostly measure
    an unfinished search. Uses no test data."""
    ratio = float(np.mean(generated_losses) / max(float(np.mean(normal_losses)), 1e-12))
    if ratio > UNFINISHED_SEARCH_RATIO:
        log.warning("latent search unfinished: the loss left on G's own samples is %.0f%% of the loss on normal calibration "
                    "data; raise search.steps or lr_z (benchmarks/search_convergence.py picks them without labels)", 100 * ratio)
    return {"generated_to_normal_loss_ratio": ratio, "unfinished": ratio > UNFINISHED_SEARCH_RATIO}


@task(cache_policy=NONE, persist_result=False)
def evaluate_scores(name: str, params: EvaluateParams, scores_path: Path, model_dir: Path, data_dir: Path, out_dir: Path) -> Path:
    """Write report/metrics.json, report/summary.json and report/plots/*; return the report folder."""
    report = out_dir / "report"
    plots = report / "plots"
    data = load_prepared(data_dir)
    frame = pd.read_parquet(scores_path)
    if data.kind == "series":  # metrics are about time points; window scores stay in scores.parquet
        frame = pd.read_parquet(Path(scores_path).parent / POINTS_FILE)
    labels, scores = frame["label"].to_numpy(), frame["score"].to_numpy()
    calibration = Calibration.load(model_dir / THRESHOLD_FILE)
    detector = load_detector(model_dir)
    mc_scores = np.load(out_dir / "calibration" / MC_SCORES_FILE)

    per_method = {}
    for method, value in calibration.thresholds.items():
        if data.kind == "series" and method == "monte_carlo":  # same keys as the others, no figures computed on points
            per_method[method] = {"threshold": value, "applicable": False, "reason": MC_ON_POINTS,
                                  **dict.fromkeys(THRESHOLD_METRICS, float("nan"))}
        else:
            per_method[method] = {"threshold": value, **threshold_metrics(labels, scores > value)}
    on_test = {m: v for m, v in per_method.items() if v.get("applicable", True)}  # thresholds drawn on the test figures
    chosen = per_method[calibration.method]
    metrics = {
        "experiment": name,
        "threshold_method": calibration.method,
        "threshold": calibration.threshold,
        "nominal_fpr": calibration.nominal_fpr,
        "precision": chosen["precision"],
        "recall": chosen["recall"],
        "f1": chosen["f1"],
        "achieved_fpr": chosen["fpr"],
        **ranking_metrics(labels, scores),
        "thresholds": per_method,
        "counts": {"test": int(len(labels)), "test_anomalous": int(labels.sum()), "mc_samples": int(mc_scores.size), "calibration": len(calibration.calibration_scores)},
        "protocol": f"ours: the {calibration.method} threshold at nominal FPR {calibration.nominal_fpr:g}, fitted without test data",
    }
    metrics["validation"] = validation_metrics(np.asarray(calibration.calibration_scores), out_dir / VALIDATION_SCORES_FILE)
    if params.paper_top_fraction is not None:
        metrics["paper_protocol"] = paper_protocol(labels, scores, params.paper_top_fraction)
    if data.kind == "series":
        from .series_evaluate import series_metrics

        metrics["counts"]["windows_test"] = int(len(data.test_labels))
        metrics["series"] = series_metrics(frame, calibration.threshold)
        if hasattr(detector, "channel_residuals"):  # SMD's root-cause labels: hit@k of the residual ranking
            from .series_attribution import attribution_hits

            metrics["series"]["attribution"] = attribution_hits(data, detector)
        metrics["protocol"] += "; point scores are the " + data.schema["windowing"]["point_rule"] + " of the covering windows' scores"
    summary = {
        "experiment": name,
        "threshold": calibration.threshold,
        "threshold_method": calibration.method,
        "score": {"mean": float(scores.mean()), "min": float(scores.min()), "max": float(scores.max())},
        "score_by_label": {str(k): {"mean": float(g.mean()), "n": int(g.size)} for k, g in frame.groupby("label")["score"]},
        "monte_carlo": calibration.mc_summary,
        "flagged": int(chosen["tp"] + chosen["fp"]),
        "interpretation": interpretation(name, metrics, calibration.method),
    }
    if "paper_protocol" in metrics:
        paper = metrics["paper_protocol"]
        summary["interpretation"] += f" Under the {paper['name']}: precision {paper['precision']:.3f}, recall {paper['recall']:.3f}, F1 {paper['f1']:.3f}."
    if hasattr(detector, "search_trajectory"):  # latent-search scores: Monte Carlo samples double as a convergence check
        summary["search_convergence"] = search_convergence(mc_scores, np.asarray(calibration.calibration_scores))
    atomic_write_text(report / METRICS_FILE, json.dumps(metrics, indent=1))
    atomic_write_text(report / SUMMARY_FILE, json.dumps(summary, indent=1))

    # figures
    score_histogram({"generated (Monte Carlo)": mc_scores, "normal calibration split": np.asarray(calibration.calibration_scores)},
                    calibration.thresholds, plots / "mc_histogram.png", f"{name}: Monte Carlo vs calibration scores")
    score_histogram({"test normal": scores[labels == 0], "test anomalous": scores[labels == 1]},
                    {m: v["threshold"] for m, v in on_test.items()}, plots / "test_histogram.png", f"{name}: test scores by class")
    roc_plot(labels, scores, {m: (v["fpr"], v["recall"]) for m, v in on_test.items()}, plots / "roc.png", f"{name}: ROC (AUROC {metrics['auroc']:.3f})")
    pr_plot(labels, scores, {m: (v["recall"], v["precision"]) for m, v in on_test.items()}, plots / "pr.png", f"{name}: precision-recall (AUPRC {metrics['auprc']:.3f})")
    fpr, tpr, _ = roc_curve(labels, scores)
    _curve_csv(report / "roc.csv", pd.DataFrame({"fpr": fpr, "tpr": tpr}))
    precision, recall, _ = precision_recall_curve(labels, scores)
    _curve_csv(report / "pr.csv", pd.DataFrame({"recall": recall, "precision": precision}))

    if detector.is_image:
        _image_figures(name, detector, data.test, frame, params, plots)
    if data.kind == "series":
        from .series_evaluate import series_figures

        series_figures(name, frame, calibration.threshold, plots, data)
    log.info(summary["interpretation"])
    return report


def _image_figures(name: str, detector, test_images: np.ndarray, frame: pd.DataFrame, params: EvaluateParams, plots: Path) -> None:
    """Grids of the most and least anomalous test images; anomaly maps and search trajectories where the model has them."""
    labels, scores = frame["label"].to_numpy(), frame["score"].to_numpy()
    order = np.argsort(scores, kind="stable")
    k = min(params.grid_images, len(order))

    def captions(idx: np.ndarray) -> list[str]:  # score, then N/A (normal/anomaly) and the class
        return [f"{scores[i]:.3g} {'A' if labels[i] else 'N'}{frame['class'].iat[i]}" for i in idx]

    for tag, idx in (("most_anomalous", order[::-1][:k]), ("least_anomalous", order[:k])):
        image_grid(np.asarray(test_images[idx]), plots / f"{tag}.png",
                   f"{name}: {k} {tag.replace('_', ' ')} test samples (score, N/A = normal/anomaly + class)", captions(idx))
    if hasattr(detector, "anomaly_maps"):  # GANomaly: where the contextual residual |x − x̂| sits
        idx = order[::-1][: min(8, len(order))]
        images = np.asarray(test_images[idx])
        reconstructions, maps = detector.anomaly_maps(images)
        anomaly_map_grid(images, reconstructions, maps, captions(idx), plots / "anomaly_maps.png",
                         f"{name}: the {len(idx)} most anomalous test samples, their reconstruction x̂ and |x − x̂|")
    if hasattr(detector, "search_trajectory") and labels.any():
        _trajectory_figure(name, detector, np.asarray(test_images[int(np.flatnonzero(labels)[0])])[None], params, plots)


def _trajectory_figure(name: str, detector, image: np.ndarray, params: EvaluateParams, plots: Path) -> None:
    """The seed's figure: G(z_t) over the search for the first anomalous test sample, at low and high lr_θ."""
    low, high = detector.config.lr_theta, params.trajectory_lr_theta_high
    rows = {f"lr_θ={low:g}": detector.search_trajectory(image, low)}
    if detector.tunes_generator:  # AnoGAN keeps θ frozen by definition: one row
        rows[f"lr_θ={high:g}"] = detector.search_trajectory(image, high)
    search_trajectory(image, rows, plots / "search_trajectory.png", f"{name}: latent search on the first anomalous test sample")
