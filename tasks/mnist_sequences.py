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

import json
import logging
from pathlib import Path

import numpy as np

from models.errors import GadflowError
from models.series_transform import TRANSFORM_FILE, SeriesTransform

from .config import DatasetSpec, ImageSequenceParams, PrepareParams, SeriesParams
from .files import atomic_write_text, staged_dir
from .prepare import read_source, source_files  # the image prepare stage's reader
from .series_prepare import SCHEMA, SERIES_FILES
from .series_store import Series, split_writer

log = logging.getLogger(__name__)


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


def prepare_image_sequences(name: str, params: PrepareParams, spec: DatasetSpec, raw: Path, out_dir: Path) -> Path:
    """Write train / calib / test frame sequences, an identity transform and schema.json into ``out_dir``."""
    settings, cfg = params.series or SeriesParams(), params.sequences or ImageSequenceParams()
    fmt, files, depth_range = source_files(spec, Path(raw))
    train_images, train_classes, test_images, test_classes = read_source(fmt, files, depth_range)
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
    transform = SeriesTransform("none").fit(list(train.values()))  # identity: pixels are already in [0, 1]
    channels = [f"px_{i}" for i in range(int(np.prod(frame_shape)))]
    schema = {
        "name": name, "kind": "series", "source": params.source, "format": "mnist_sequences",
        "shape": [settings.seq_len, len(channels)], "frame_shape": frame_shape, "pixel_scale": "pixel / 255",
        "channels": channels, "input_channels": channels,
        "windowing": settings.model_dump(exclude={"machines", "train_rows"}),
        "normal_classes": params.normal_classes, "calibration_fraction": params.calibration_fraction, "seed": params.seed,
        "sequences": cfg.model_dump(), "series": list(test),
        "counts": {
            "train_points": int(sum(len(v) for v in train.values())),
            "calib_points": int(sum(len(v) for v in calib.values())),
            "test_points": int(sum(len(s.labels) for s in test.values())),
            "test_anomalous_points": int(sum(int(s.labels.sum()) for s in test.values())),
        },
        "files": {**SERIES_FILES, "transform": TRANSFORM_FILE, "inserted_digits": "inserted_digits.json"},
        "source_sha256": {role: f.sha256 for role, f in spec.files.items()},
    }
    with staged_dir(out_dir) as staging:
        for key, parts in (("train", train), ("calib", calib)):
            with split_writer(staging / SERIES_FILES[key]) as out:
                for part_name, values in parts.items():
                    out.write(part_name, Series(values, np.zeros(len(values), dtype=np.int8)))
        with split_writer(staging / SERIES_FILES["test"]) as out:
            for part_name, series in test.items():
                out.write(part_name, series)
        transform.save(staging / TRANSFORM_FILE)
        atomic_write_text(staging / "inserted_digits.json", json.dumps(test_digits))  # per test frame: the inserted digit, -1 = normal
        atomic_write_text(staging / SCHEMA, json.dumps(schema, indent=1))
    log.info("%s: %d test sequences; train %d, calib %d, test %d frames (%d anomalous); windows %s", name, len(test),
             *schema["counts"].values(), schema["shape"])
    return out_dir
