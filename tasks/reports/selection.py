"""What chose each of a model's settings, as every report records it: the declared signal, never the test labels.

Two signals exist (models.selection): ``label_free`` (training and calibration normals, generated samples, synthetic
anomalies made from training normals) and ``validation`` (the declared validation split of anomaly-class training
samples). The record names, for each choice, the rule, the signal and its evidence:
- epoch: train/selection.json (the train step's record: the last epoch, or the best by the selection set's AUROC);
- threshold: the calibration method's quantile on normals or generated samples (label-free by construction);
- search budget (latent-search models): params.yaml, checked on generated samples by the convergence check.
"""

from __future__ import annotations

import json
from pathlib import Path

THRESHOLD_EVIDENCE = {  # label_method -> what its threshold is fitted on
    "calibration": "the (1 - nominal FPR) quantile of the normal calibration split's scores",
    "monte_carlo": "the (1 - nominal FPR) quantile of generated samples' scores, checked on the normal calibration split",
    "pot": "peaks over threshold (generalised Pareto) on the normal calibration split's scores",
}


def selection_record(train_selection: Path, threshold_method: str, search_budget: dict | None) -> dict:
    """metrics.json's ``selection``: the signal and, per choice, what chose it. No choice reads a test label."""
    try:
        epoch = json.loads(Path(train_selection).read_text())
    except FileNotFoundError:
        epoch = {"rule": "unknown", "signal": None, "note": f"{train_selection} is missing: trained before epoch selection was recorded; retrain"}
    choices = {
        "epoch": epoch,
        "threshold": {"rule": threshold_method, "signal": "label_free", "evidence": THRESHOLD_EVIDENCE[threshold_method]},
    }
    if search_budget is not None:
        choices["search_budget"] = {"rule": "params", "signal": "label_free", **search_budget,
                                    "evidence": "params.yaml; checked on generated samples (summary.json search_convergence)"}
    signals = sorted({c["signal"] for c in choices.values() if c.get("signal")})
    return {"signal": signals[0] if len(signals) == 1 else signals, "test_labels_used": False, "choices": choices}


def selection_sentence(record: dict) -> str:
    """One sentence for the summary's interpretation."""
    epoch = record["choices"]["epoch"]
    if epoch["rule"] == "best":
        return f" Selected without test labels ({epoch['signal']}): {epoch['note']} ({epoch['auroc']:.3f})."
    return f" Selection signal: {record['signal']}; weights: {epoch['note']}."
