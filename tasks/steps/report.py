"""Report step (evaluate): metrics at each threshold, ranking metrics, figures and a summary; writes ``report/``.

Every figure here stands beside what it measures: the test scores by class with each threshold, ROC and PR curves
with the operating points, and the data kind's own figures (images: the most and least anomalous test samples;
series: the scores over time). Nothing in this step selects a setting: it reports.
"""

from __future__ import annotations

import json
import logging
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import pandas as pd
from pydantic import Field

from models.registry import load_detector
from models.storage import atomic_write_text, staged_dir
from models.threshold import Calibration

from ..adapters import load_prepared
from ..layout import ExperimentLayout, prepared_dir
from ..settings import Strict

if TYPE_CHECKING:
    from ..params import Experiment

log = logging.getLogger(__name__)

KIND_REPORTS = {"image": "tasks.reports.image", "series": "tasks.reports.series"}  # a data kind's own metrics and figures
THRESHOLD_METRICS = ("precision", "recall", "f1", "fpr", "tp", "fp", "fn", "tn")  # tasks.reports.metrics.threshold_metrics' keys
MC_NOT_LABELLING = ("the Monte Carlo threshold is a quantile of generated windows' scores; "
                    "a time series is labelled on points, so it has no point metrics")


class ReportSettings(Strict):
    grid_images: Annotated[int, Field(ge=1, le=256)] = 32  # most / least anomalous test images shown
    # The paper protocol of EGBAD / ALAD / DAGMM on KDD99: flag this top fraction of the *test* scores. It uses
    # test statistics, so it is reported beside the label-free thresholds for comparison only, never used to label.
    paper_top_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None
    trajectory_lr_theta_high: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-4  # latent-search models: the "high lr_θ" row of the trajectory figure


def _curve_csv(path: Path, frame: pd.DataFrame, max_points: int = 500) -> None:
    """Thinned curve table for `dvc plots show` (full curves are in the PNGs)."""
    step = max(1, len(frame) // max_points)
    atomic_write_text(path, frame.iloc[::step].to_csv(index=False, float_format="%.6g"))


def report(exp: Experiment, layout: ExperimentLayout) -> Path:
    """Write metrics.json, summary.json, the curve tables and every figure; return the report folder."""
    # sklearn and matplotlib load here, when the step runs: loading params (which holds ReportSettings) stays light
    from sklearn.metrics import precision_recall_curve, roc_curve

    from ..reports.evaluation import interpretation, paper_protocol, search_convergence, validation_metrics
    from ..reports.metrics import ranking_metrics, threshold_metrics
    from ..reports.plots import pr_plot, roc_plot, score_histogram, selection_curve
    from ..reports.reference import reference_metrics, reference_scores, reference_sentence
    from ..reports.selection import selection_record, selection_sentence

    name, settings = exp.name, exp.report
    data = load_prepared(prepared_dir(exp.data))
    frame = data.evaluated(layout.score_tables)  # the rows thresholds label: test samples, or a series' time points
    labels, scores = frame["label"].to_numpy(), frame["score"].to_numpy()
    calibration = Calibration.load(layout.threshold)
    detector = load_detector(layout.model_dir)
    mc_scores = np.load(layout.mc_scores)
    labelling = detector.capabilities.monte_carlo_labels

    per_method = {}
    for method, value in calibration.thresholds.items():
        if method == "monte_carlo" and not labelling:  # same keys as the others, no figures computed on points
            per_method[method] = {"threshold": value, "applicable": False, "reason": MC_NOT_LABELLING, **dict.fromkeys(THRESHOLD_METRICS, float("nan"))}
        else:
            per_method[method] = {"threshold": value, **threshold_metrics(labels, scores > value)}
    check = calibration.mc_summary.get("check")
    if check and not check["holds"]:  # refused at calibration, on the normal calibration split (no test label)
        per_method["monte_carlo"].update(refused=True, reason=check["reason"])
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
        "protocol": f"ours: the {calibration.method} threshold at nominal FPR {calibration.nominal_fpr:g}, fitted without test data" + data.protocol_note(),
    }
    references = reference_scores(frame, layout.root.parent, exp.references)  # aligned with frame's rows, or why not
    metrics["reference"] = reference_metrics(labels, metrics, references)
    search = detector.config.search if detector.capabilities.search_loss_score else None
    budget = None if search is None else {"steps": search.steps, "n_seeds": search.n_seeds}
    metrics["selection"] = selection_record(layout.selection, calibration.method, budget)
    metrics["validation"] = validation_metrics(np.asarray(calibration.calibration_scores), layout.validation_scores)
    if settings.paper_top_fraction is not None:
        metrics["paper_protocol"] = paper_protocol(labels, scores, settings.paper_top_fraction)
    kind_report = import_module(KIND_REPORTS[data.kind]) if data.kind in KIND_REPORTS else None
    kind_metrics = kind_report.metrics(data, frame, calibration.threshold, detector) if kind_report else {}
    metrics["counts"].update(kind_metrics.pop("counts", {}))
    metrics.update(kind_metrics)
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
    summary["interpretation"] += reference_sentence(metrics["reference"])
    summary["interpretation"] += selection_sentence(metrics["selection"])
    if per_method.get("monte_carlo", {}).get("refused"):
        summary["interpretation"] += f" Monte Carlo threshold refused: {per_method['monte_carlo']['reason']}."
    if "paper_protocol" in metrics:
        paper = metrics["paper_protocol"]
        summary["interpretation"] += f" Under the {paper['name']}: precision {paper['precision']:.3f}, recall {paper['recall']:.3f}, F1 {paper['f1']:.3f}."
    if detector.capabilities.search_loss_score:  # latent-search scores: Monte Carlo samples double as a convergence check
        summary["search_convergence"] = search_convergence(mc_scores, np.asarray(calibration.calibration_scores))

    with staged_dir(layout.report_dir) as staging:
        # the layout's names, inside the staging folder that replaces report/ when everything is written
        paths = {p: staging / getattr(layout, p).relative_to(layout.report_dir) for p in ("metrics", "summary", "plots", "roc_csv", "pr_csv")}
        atomic_write_text(paths["metrics"], json.dumps(metrics, indent=1))
        atomic_write_text(paths["summary"], json.dumps(summary, indent=1))
        plots = paths["plots"]
        groups = {"generated (Monte Carlo)": mc_scores} if mc_scores.size else {}  # none without a generator
        score_histogram({**groups, "normal calibration split": np.asarray(calibration.calibration_scores)},
                        calibration.thresholds, plots / "mc_histogram.png",
                        f"{name}: {'Monte Carlo vs calibration' if groups else 'calibration'} scores")
        score_histogram({"test normal": scores[labels == 0], "test anomalous": scores[labels == 1]},
                        {m: v["threshold"] for m, v in on_test.items()}, plots / "test_histogram.png", f"{name}: test scores by class")
        roc_plot(labels, scores, {m: (v["fpr"], v["recall"]) for m, v in on_test.items()}, plots / "roc.png", f"{name}: ROC (AUROC {metrics['auroc']:.3f})",
                 references={r: (s, metrics["reference"][r]["auroc"]) for r, s in references.items() if not isinstance(s, str)})
        pr_plot(labels, scores, {m: (v["recall"], v["precision"]) for m, v in on_test.items()}, plots / "pr.png", f"{name}: precision-recall (AUPRC {metrics['auprc']:.3f})")
        fpr, tpr, _ = roc_curve(labels, scores)
        _curve_csv(paths["roc_csv"], pd.DataFrame({"fpr": fpr, "tpr": tpr}))
        precision, recall, _ = precision_recall_curve(labels, scores)
        _curve_csv(paths["pr_csv"], pd.DataFrame({"recall": recall, "precision": precision}))
        epoch = metrics["selection"]["choices"]["epoch"]
        if epoch["rule"] == "best":
            selection_curve(epoch["curve"], epoch["epoch"], plots / "selection.png", f"{name}: epoch selection without test labels", epoch["signal"])
        if kind_report:
            kind_report.figures(name, data, frame, calibration.threshold, detector, settings, plots)
    log.info(summary["interpretation"])
    return layout.report_dir
