"""From window scores to time-point scores, per series of a prepared split.

A window model scores windows; users are alerted on time points. Each point's score is the mean or
the max (``series.point_rule``) of the scores of the windows covering it; thresholds are then fitted on
the calibration series' point scores and applied to the test series' point scores, so both sides use
one rule. Points no window covers (the ``drop`` tail rule) have no score and are left out.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from models.threshold import Calibration
from models.windowing import point_scores

from .prepare import PreparedData


def point_scores_by_series(data: PreparedData, key: str, window_scores: np.ndarray) -> dict[str, np.ndarray]:
    """Series name -> point scores (T,) float64 (NaN where uncovered), from the split's window scores in stored order."""
    rule = data.schema["windowing"]["point_rule"]
    out, at = {}, 0
    for name, series, windows in data.series_windows(key):
        out[name] = point_scores(window_scores[at : at + len(windows)], windows.starts, windows.seq_len, len(series.labels), rule)
        at += len(windows)
    if at != len(window_scores):
        raise ValueError(f"{len(window_scores)} window scores for {at} windows of the {key} split")
    return out


def covered_points(scores: dict[str, np.ndarray]) -> np.ndarray:
    """Every scored point of every series, concatenated: (N_points,)."""
    flat = np.concatenate(list(scores.values())) if scores else np.zeros(0)
    return flat[np.isfinite(flat)]


def points_table(data: PreparedData, scores: dict[str, np.ndarray], calibration: Calibration) -> pa.Table:
    """One row per scored test point: series, t, label, score, p_value (against the calibration points), is_anomaly."""
    names, times, labels, values = [], [], [], []
    for name, series, _ in data.series_windows("test"):
        keep = np.flatnonzero(np.isfinite(scores[name]))
        names.append(np.full(len(keep), name, dtype=object))
        times.append(keep.astype(np.int64))
        labels.append(series.labels[keep])
        values.append(scores[name][keep])
    score = np.concatenate(values)
    return pa.table({
        "series": pa.array(np.concatenate(names), type=pa.string()).dictionary_encode(),
        "t": np.concatenate(times),
        "label": np.concatenate(labels).astype(np.int8),
        "score": score,
        "p_value": calibration.p_values(score),
        "is_anomaly": calibration.is_anomaly(score),
    })
