"""Sensor attribution: which sensors does the model blame for a labelled anomaly, against the operators' labels.

For every labelled range of SMD's interpretation_label (a test-row range and its root-cause sensors),
the windows overlapping the range are reconstructed by the model's latent search; the per-channel
residual |x − G(z*)|, pooled per point over the covering windows and averaged over the range, ranks
the sensors. hit@k is the share of ranges whose k top-ranked sensors include at least one labelled
root-cause sensor; the same figure for a random ranking is computed exactly beside it. Only windows
touching labelled ranges are reconstructed, so the cost is a small fraction of scoring.
"""

from __future__ import annotations

import json
from math import comb
from typing import TYPE_CHECKING

import numpy as np

from models.windowing import point_channel_scores

if TYPE_CHECKING:
    from ..adapters.series import Data

# Beside the prepared series of a source with root-cause labels (SMD's reader writes it): per series, [start, end, channels].
# Named here, where it is read: the series adapter imports this module, and must not bring the SMD reader into every stage.
INTERPRETATION_FILE = "interpretation.json"


def random_hit_probability(n_channels: int, n_relevant: int, k: int) -> float:
    """P(at least one of n_relevant labelled sensors among k sensors drawn at random of n_channels)."""
    k = min(k, n_channels)
    return 1.0 - comb(n_channels - n_relevant, k) / comb(n_channels, k)


def attribution_hits(data: Data, detector, ks: tuple[int, ...] = (1, 3, 5)) -> dict | None:
    """hit@k of the model's residual ranking over every labelled range; None without interpretation labels or with PCA."""
    path = data.folder / INTERPRETATION_FILE
    if not path.is_file() or data.schema["windowing"].get("pca_components") is not None:
        return None  # principal components are not sensors
    ranges = json.loads(path.read_text())
    hits = {k: [] for k in ks}
    chance = {k: [] for k in ks}
    for name, series, windows in data.series_windows("test"):
        for start, end, relevant in ranges.get(name, []):
            touching = np.flatnonzero((windows.starts < end) & (windows.starts + windows.seq_len > start))
            if touching.size == 0:
                continue
            residuals = detector.channel_residuals(windows[touching])  # (W, seq_len, C)
            per_point = point_channel_scores(residuals, windows.starts[touching], len(series.labels))  # (T, C), NaN off the windows
            if not np.isfinite(per_point[start:end]).any():
                continue  # no window covers this range (tail rule 'drop'): nothing to rank
            ranking = np.argsort(-np.nanmean(per_point[start:end], axis=0), kind="stable")  # sensors, most blamed first
            for k in ks:
                hits[k].append(bool(set(ranking[:k].tolist()) & set(relevant)))
                chance[k].append(random_hit_probability(per_point.shape[1], len(set(relevant)), k))
    if not hits[ks[0]]:
        return None
    return {
        "ranges": len(hits[ks[0]]),
        **{f"hit@{k}": float(np.mean(hits[k])) for k in ks},
        **{f"hit@{k}_random_ranking": float(np.mean(chance[k])) for k in ks},
        "definition": "share of labelled ranges whose k highest-residual sensors include a labelled root-cause sensor",
    }
