"""Time-series detection metrics, each named for what it counts.

- **point-wise**: precision / recall / F1 over time points (``tasks.metrics.threshold_metrics``);
- **point-adjusted** (the OmniAnomaly / TranAD convention): every point of a true anomaly segment
  counts as detected when any one point of it is flagged. It rewards noise, so it is reported only
  next to the same figure for uniformly random scores;
- **event-wise recall**: the share of true anomaly segments with at least one flagged point;
- **AUROC / AUPRC** over time points (``tasks.metrics.ranking_metrics``);
- **SKAB aggregation**: TP / FP / FN / TN summed over all files, then F1, false-alarm rate
  FAR = FP / (FP + TN) and missed-alarm rate MAR = FN / (FN + TP).

A segment is a maximal run of consecutive 1s in the point labels, as (start, end) with end exclusive.
"""

from __future__ import annotations

import numpy as np

from models.errors import GadflowError

from .metrics import ranking_metrics, threshold_metrics


def _binary(name: str, values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1:
        raise GadflowError(f"{name}: expected a 1-D array of 0/1, got shape {values.shape}")
    if values.size and not np.isin(values, (0, 1)).all():
        raise GadflowError(f"{name}: values must be 0 or 1")
    return values.astype(np.int8)


def anomaly_segments(labels: np.ndarray) -> np.ndarray:
    """Maximal runs of 1s in ``labels`` (T,) as an int64 array (n_segments, 2) of [start, end)."""
    labels = _binary("labels", labels)
    edges = np.diff(np.concatenate([[0], labels, [0]]).astype(np.int8))
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], axis=1).astype(np.int64)


def point_adjust(labels: np.ndarray, flagged: np.ndarray) -> np.ndarray:
    """``flagged`` with every true segment that has a flagged point flagged in full."""
    labels = _binary("labels", labels)
    flagged = _binary("flagged", flagged)
    if labels.shape != flagged.shape:
        raise GadflowError(f"{labels.shape[0]} labels but {flagged.shape[0]} flags")
    adjusted = flagged.copy()
    hits = np.concatenate([[0], np.cumsum(flagged, dtype=np.int64)])  # hits[e] - hits[s] = flags in [s, e)
    for start, end in anomaly_segments(labels):
        if hits[end] > hits[start]:
            adjusted[start:end] = 1
    return adjusted


def event_recall(labels: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    """Share of true anomaly segments with at least one flagged point."""
    labels = _binary("labels", labels)
    flagged = _binary("flagged", flagged)
    segments = anomaly_segments(labels)
    hits = np.concatenate([[0], np.cumsum(flagged, dtype=np.int64)])
    detected = int(sum(hits[e] > hits[s] for s, e in segments))
    return {"event_recall": detected / len(segments) if len(segments) else float("nan"),
            "events": int(len(segments)), "events_detected": detected}


def series_report(labels: np.ndarray, scores: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    """All the named time-series metrics of one labelled series and its flags at one threshold."""
    pointwise = threshold_metrics(labels, flagged)
    adjusted = threshold_metrics(labels, point_adjust(labels, flagged))
    return {
        **{f"pointwise_{k}": v for k, v in pointwise.items()},
        **{f"point_adjusted_{k}": adjusted[k] for k in ("precision", "recall", "f1")},
        **event_recall(labels, flagged),
        **ranking_metrics(labels, scores),
        "flagged_fraction": float(np.mean(flagged)) if len(flagged) else float("nan"),
    }


def random_flags(n_points: int, flagged_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Flags (n_points,) of uniformly random scores at the threshold that flags ``flagged_fraction`` of the points."""
    if not 0.0 <= flagged_fraction <= 1.0:
        raise GadflowError(f"flagged_fraction must be in [0, 1] (got {flagged_fraction})")
    flags = np.zeros(n_points, dtype=np.int8)
    flags[rng.permutation(n_points)[: int(round(flagged_fraction * n_points))]] = 1
    return flags


def skab_aggregate(per_file: list[dict[str, int]]) -> dict[str, float]:
    """SKAB's aggregation: TP / FP / FN / TN summed over the files, then F1, FAR and MAR."""
    tp, fp, fn, tn = (sum(int(r[k]) for r in per_file) for k in ("tp", "fp", "fn", "tn"))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "precision": precision, "recall": recall,
        "far": fp / (fp + tn) if fp + tn else float("nan"),
        "mar": fn / (fn + tp) if fn + tp else float("nan"),
        "tp": tp, "fp": fp, "fn": fn, "tn": tn, "files": len(per_file),
    }
