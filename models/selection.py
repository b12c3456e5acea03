"""Which epoch's weights a GAN keeps, chosen without test labels.

After every epoch the trainer scores a fixed selection set with the model's own score and records its AUROC: how
well the score at that epoch separates held-out normals from anomalies that are not test data. Two declared signals
supply the anomalies:

- ``label_free`` (the default): synthetic anomalies made from *training normals only* (``synthetic_anomalies``):
  a patch of another normal pasted in, a blend of two normals, and a patch of noise (images); another normal's
  features pasted in, features drawn from different normals, and a blend of two normals (tables). No other class
  is ever seen.
- ``validation``: the held-out training samples of the anomaly classes that the promotion gate already uses
  (the data's validation split, never the test split).

The held-out normals are the calibration split's (normal, never trained on). With ``epoch: best`` the model keeps the
weights of the epoch with the highest AUROC (the earliest on a tie); with ``epoch: last`` it keeps the last epoch's
and records nothing. Training itself is unchanged either way, so resuming stays bit-identical.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .device import Stream
from .errors import GadflowError
from .settings import Settings, setting

SIGNALS = {  # signal -> what its anomalies are, as reports state it
    "label_free": "synthetic anomalies made from training normals (another normal's patch, a blend of two normals, a noise patch)",
    "validation": "the validation split (held-out training samples of the anomaly classes)",
}


@dataclass(frozen=True)
class EpochSelection(Settings):
    """Keep the last epoch's weights, or the best epoch's by AUROC on a selection set (measured after every epoch)."""

    epoch: Literal["best", "last"] = "best"
    signal: Literal["label_free", "validation"] = "label_free"  # where the selection set's anomalies come from
    max_normals: int = setting(2000, ge=10, le=1_000_000)  # calibration normals scored after each epoch (a seeded subset)
    n_synthetic: int = setting(2000, ge=10, le=1_000_000)  # synthetic anomalies (label_free; validation uses its split, capped alike)


@dataclass(frozen=True)
class SelectionSet:
    """Normals (N, ...) and anomalies (M, ...) as model inputs, and where the anomalies came from."""

    normals: np.ndarray
    anomalies: np.ndarray
    signal: str

    @functools.cached_property  # hashed once: every checkpoint records it
    def identity(self) -> str:
        """What a checkpoint's selection record must match to be resumed: the signal and both sets' bytes."""
        digest = hashlib.sha256(self.signal.encode())
        for part in (self.normals, self.anomalies):
            digest.update(str(part.shape).encode())
            digest.update(np.ascontiguousarray(part).tobytes())
        return digest.hexdigest()[:16]

    def auroc(self, normal_scores: np.ndarray, anomaly_scores: np.ndarray) -> float:
        """AUROC of the scores (higher = more anomalous); NaN when a score is not finite."""
        from sklearn.metrics import roc_auc_score

        scores = np.concatenate([normal_scores, anomaly_scores])
        if not np.isfinite(scores).all():
            return float("nan")
        labels = np.r_[np.zeros(len(normal_scores)), np.ones(len(anomaly_scores))]
        return float(roc_auc_score(labels, scores))


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(Stream.SELECTION)])


def subset(rows: np.ndarray, n: int, seed: int) -> np.ndarray:
    """At most n rows, a seeded draw in their original order (all of them when there are no more than n)."""
    if len(rows) <= n:
        return np.asarray(rows)
    return np.asarray(rows[np.sort(_rng(seed).choice(len(rows), n, replace=False))])


def synthetic_anomalies(normals: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n synthetic anomalies made from training normals only, a third of each kind, deterministic per seed.

    Images (N, C, H, W) uint8: a square of side 1/4–1/2 of the image from another normal pasted in; the rounded mean
    of two normals; a square of uniform noise. Tables (N, D) float: 1/4–1/2 of the features taken from another normal;
    every feature from an independently drawn normal; the mean of two normals.
    """
    if len(normals) < 2:
        raise GadflowError(f"synthetic anomalies need at least 2 training normals, got {len(normals)}")
    rng = _rng(seed)
    a = np.array(normals[np.sort(rng.integers(0, len(normals), n))])  # (n, ...) the normals each anomaly starts from
    b = np.asarray(normals[rng.integers(0, len(normals), n)])  # (n, ...) the normals they borrow from
    kind = np.arange(n) % 3
    if a.ndim == 4:
        _images(a, b, kind, rng)
    elif a.ndim == 2:
        _table(a, b, kind, normals, rng)
    else:
        raise GadflowError(f"synthetic anomalies are made for images (N, C, H, W) and tables (N, D), not shape {a.shape}")
    return a


def _images(a: np.ndarray, b: np.ndarray, kind: np.ndarray, rng: np.random.Generator) -> None:
    """Corrupt the uint8 images ``a`` (n, C, H, W) in place by kind: 0 patch of b, 1 blend with b, 2 noise patch."""
    _, _, h, w = a.shape
    for i in range(len(a)):
        if kind[i] == 1:
            a[i] = np.round((a[i].astype(np.float32) + b[i]) / 2).astype(np.uint8)
            continue
        side_h, side_w = int(rng.integers(h // 4, h // 2 + 1)), int(rng.integers(w // 4, w // 2 + 1))
        top, left = int(rng.integers(0, h - side_h + 1)), int(rng.integers(0, w - side_w + 1))
        window = (slice(None), slice(top, top + side_h), slice(left, left + side_w))
        if kind[i] == 0:
            a[i][window] = b[i][window]
        else:
            a[i][window] = rng.integers(0, 256, a[i][window].shape, dtype=np.uint8)


def _table(a: np.ndarray, b: np.ndarray, kind: np.ndarray, normals: np.ndarray, rng: np.random.Generator) -> None:
    """Corrupt the float rows ``a`` (n, D) in place by kind: 0 features of b, 1 mixed marginals, 2 blend with b."""
    n, d = a.shape
    for i in np.flatnonzero(kind == 0):
        cols = rng.choice(d, int(rng.integers(max(1, d // 4), max(1, d // 2) + 1)), replace=False)
        a[i, cols] = b[i, cols]
    mixed = np.flatnonzero(kind == 1)
    if len(mixed):
        rows = rng.integers(0, len(normals), (len(mixed), d))  # (m, D): feature j of anomaly i from normal rows[i, j]
        a[mixed] = np.asarray(normals)[rows, np.arange(d)]
    blend = kind == 2
    a[blend] = (a[blend] + b[blend]) / 2
