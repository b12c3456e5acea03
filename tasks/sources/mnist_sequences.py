"""Image sequences from MNIST (the seed's MAD-GAN extension): sequences of one digit's images, with
runs of other digits' images inserted at known, seeded positions in the test sequences.

train  = sequences of the normal digit's training images (a seeded order), minus the calibration images
calib  = sequences of a seeded ``calibration_fraction`` of those images: thresholds are fitted on it
test   = sequences of the normal digit's test images, each with runs of 1..``max_run`` frames of other
         digits' test images inserted until ``anomaly_rate`` of its frames are anomalous; label 1 marks them

Each frame is one time step: its pixels, flattened and divided by 255, are the step's C·H·W values, so
the series machinery (windows, point scores, metrics) works unchanged, with frames as the points. The
frame shape is in schema.json; MAD-GAN then puts a CNN per frame in front of its LSTMs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.errors import GadflowError

from ..adapters.series import SeriesSource
from ..adapters.series_store import Series
from ..steps.prepare import ImageSequenceParams
from .idx import read_images

if TYPE_CHECKING:
    from ..steps.prepare import PrepareParams, SeriesParams
    from .download import DatasetSpec

log = logging.getLogger(__name__)

INSERTED_DIGITS_FILE = "inserted_digits.json"  # per test frame: the inserted digit, -1 = normal


def anomaly_runs(n_frames: int, rate: float, max_run: int, rng: np.random.Generator) -> np.ndarray:
    """(n_frames,) bool: runs of 1..max_run marked frames at seeded positions, never touching, round(rate·n) in all."""
    target = int(round(rate * n_frames))
    mask = np.zeros(n_frames, dtype=bool)
    for _ in range(100 * n_frames + 100):  # rate ≤ 0.3 (params) leaves room; the bound only stops a pathological loop
        left = target - int(mask.sum())
        if left <= 0:
            return mask
        length = min(int(rng.integers(1, max_run + 1)), left)
        start = int(rng.integers(0, n_frames - length + 1))
        if not mask[max(0, start - 1) : start + length + 1].any():  # a gap of one normal frame at least between runs
            mask[start : start + length] = True
    raise GadflowError(f"cannot place {target} anomalous frames in runs of up to {max_run} among {n_frames} frames")


def _frames(images: np.ndarray) -> np.ndarray:
    """uint8 (N, C, H, W) -> float32 (N, C·H·W) in [0, 1]."""
    return (np.asarray(images, dtype=np.float32) / 255.0).reshape(len(images), -1)


def _normal_sequences(images: np.ndarray, length: int, seq_len: int, prefix: str) -> dict[str, np.ndarray]:
    """Chunk frames (N, D) into sequences of ``length``; a shorter last chunk is kept when it holds a window."""
    chunks = [images[i : i + length] for i in range(0, len(images), length)]
    return {f"{prefix}-{k:03d}": c for k, c in enumerate(chunks) if len(c) >= seq_len}


def _test_sequences(normal: np.ndarray, anomalous: np.ndarray, anomalous_digits: np.ndarray, cfg: ImageSequenceParams,
                    seq_len: int, rng: np.random.Generator) -> tuple[dict[str, Series], dict[str, list[int]]]:
    """Sequences of ``cfg.length`` frames: the normal frames in order, other digits' frames at the marked positions."""
    sequences, digits = {}, {}
    used_normal = used_anomalous = 0
    while len(normal) - used_normal >= seq_len:
        mask = anomaly_runs(cfg.length, cfg.anomaly_rate, cfg.max_run, rng)
        normal_left = len(normal) - used_normal
        if int((~mask).sum()) > normal_left:  # the last sequence ends with the last normal frame
            mask = mask[: int(np.flatnonzero(~mask)[normal_left - 1]) + 1]
        elif normal_left - int((~mask).sum()) < seq_len:  # too few left for a sequence of their own: they end this one
            mask = np.concatenate([mask, np.zeros(normal_left - int((~mask).sum()), dtype=bool)])
        n_anomalous = int(mask.sum())
        if used_anomalous + n_anomalous > len(anomalous):
            raise GadflowError(f"not enough other-digit test images ({len(anomalous)}) for anomaly_rate {cfg.anomaly_rate}")
        frames = np.empty((len(mask), normal.shape[1]), dtype=np.float32)
        frames[~mask] = normal[used_normal : used_normal + int((~mask).sum())]
        frames[mask] = anomalous[used_anomalous : used_anomalous + n_anomalous]
        name = f"test-{len(sequences):03d}"
        sequences[name] = Series(frames, mask.astype(np.int8))
        digit = np.full(len(mask), -1)
        digit[mask] = anomalous_digits[used_anomalous : used_anomalous + n_anomalous]
        digits[name] = digit.tolist()
        used_normal += int((~mask).sum())
        used_anomalous += n_anomalous
    return sequences, digits


def read_series(name: str, spec: DatasetSpec, params: PrepareParams, settings: SeriesParams, raw: Path) -> SeriesSource:
    """Train, calib and test frame sequences of an IDX image source: pixels / 255 as they are (the transform is the identity)."""
    cfg = params.sequences or ImageSequenceParams()
    train_images, train_classes, test_images, test_classes = read_images({role: Path(raw) / f.file for role, f in spec.files.items()}, spec)
    rng = np.random.default_rng(params.seed)
    normal_train = rng.permutation(np.flatnonzero(np.isin(train_classes, params.normal_classes)))
    if normal_train.size == 0:
        raise GadflowError(f"prepare.{name}.normal_classes {params.normal_classes}: no training image has such a class")
    n_calib = int(round(params.calibration_fraction * normal_train.size))
    calib_idx, train_idx = normal_train[:n_calib], normal_train[n_calib:]
    train = _normal_sequences(_frames(train_images[train_idx]), cfg.length, settings.seq_len, "train")
    calib = _normal_sequences(_frames(train_images[calib_idx]), cfg.length, settings.seq_len, "calib")
    if not train or not calib:
        raise GadflowError(f"prepare.{name}: too few normal training images for sequences holding a window (seq_len {settings.seq_len})")
    normal_test = rng.permutation(np.flatnonzero(np.isin(test_classes, params.normal_classes)))
    other_test = rng.permutation(np.flatnonzero(~np.isin(test_classes, params.normal_classes)))
    test, test_digits = _test_sequences(_frames(test_images[normal_test]), _frames(test_images[other_test]), test_classes[other_test],
                                        cfg, settings.seq_len, rng)
    frame_shape = list(train_images.shape[1:])  # (C, H, W)
    notes = {"pixel_scale": "pixel / 255", "normal_classes": params.normal_classes, "seed": params.seed, "sequences": cfg.model_dump()}
    return SeriesSource(train, test, [f"px_{i}" for i in range(int(np.prod(frame_shape)))], notes, calib=calib,
                        extra_files={INSERTED_DIGITS_FILE: test_digits}, frame_shape=frame_shape)
