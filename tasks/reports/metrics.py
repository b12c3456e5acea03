"""Detection metrics of the anomaly class (label 1), all from sklearn."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score


def threshold_metrics(labels: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    """Precision, recall, F1 of the anomaly class and the false-positive rate on normals."""
    labels = np.asarray(labels).astype(int)
    flagged = np.asarray(flagged).astype(int)
    precision, recall, f1, _ = precision_recall_fscore_support(labels, flagged, labels=[1], average=None, zero_division=0)
    tn, fp, fn, tp = confusion_matrix(labels, flagged, labels=[0, 1]).ravel()
    return {
        "precision": float(precision[0]),
        "recall": float(recall[0]),
        "f1": float(f1[0]),
        "fpr": float(fp / (fp + tn)) if fp + tn else float("nan"),
        "tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn),
    }


def ranking_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Threshold-free: AUROC and AUPRC (average precision) of 'higher score = anomaly'."""
    labels = np.asarray(labels).astype(int)
    if labels.min() == labels.max():
        return {"auroc": float("nan"), "auprc": float("nan")}
    return {"auroc": float(roc_auc_score(labels, scores)), "auprc": float(average_precision_score(labels, scores))}
