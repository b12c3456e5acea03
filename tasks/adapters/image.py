"""The image adapter: uint8 (N, C, H, W) splits as memory-mappable .npy files, pixel rows for the served model.

train  = normal training images minus a seeded normal calibration split
calib  = that held-out normal split (thresholds and p-values are fitted on it, never on test)
test   = the full test set, label 0 = normal class, 1 = anomaly
val_anomalies = a seeded draw of training images of the other classes (the promotion gate's validation split)
"""

from __future__ import annotations

import json
import logging
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from models.inputs import InputSpec
from models.errors import GadflowError
from models.storage import staged_dir

from .base import SCHEMA, PreparedData, ServedInput

if TYPE_CHECKING:
    from ..steps.prepare import PrepareParams

log = logging.getLogger(__name__)

SPLIT_FILES = {"train": "train.npy", "calib": "calib.npy", "test": "test.npy", "test_labels": "test_labels.npy", "test_classes": "test_classes.npy"}
VALIDATION_FILE = "val_anomalies.npy"  # held-out training images of the non-normal classes (when the source has them)


class ImageSource(NamedTuple):
    """What an image format's reader delivers (``tasks.sources``): uint8 (N, C, H, W) images and their source classes."""

    train: np.ndarray
    train_classes: np.ndarray  # (N_train,) int
    test: np.ndarray
    test_classes: np.ndarray  # (N_test,) int; folder layouts: 0 normal, 1 anomalous


def check_files(files: dict[str, Path]) -> None:
    """Every raw file a reader needs must be there."""
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise GadflowError(f"raw file(s) missing: {', '.join(missing)}; run the download or generate stage")


# --- writing -------------------------------------------------------------------------------
def one_class_split(source: ImageSource, normal_classes: list[int], calibration_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Split by the one-class protocol; the calibration split is a seeded draw from the normal training images.

    ``val_anomalies``: a seeded draw of as many training images of the other classes as the calibration split
    holds (fewer if there are fewer); empty when the training set has normal images only."""
    train_images, train_classes, test_images, test_classes = source
    normal_idx = np.flatnonzero(np.isin(train_classes, normal_classes))
    if normal_idx.size == 0:
        present = sorted(set(np.unique(train_classes).tolist()))
        raise GadflowError(f"normal_classes {normal_classes}: no training images of these classes (classes present: {present})")
    n_calib = int(round(calibration_fraction * normal_idx.size))
    if n_calib < 1 or n_calib >= normal_idx.size:
        raise GadflowError(f"calibration_fraction {calibration_fraction} of {normal_idx.size} normal images leaves an empty split")
    shuffled = np.random.default_rng(seed).permutation(normal_idx)
    calib_idx, train_idx = np.sort(shuffled[:n_calib]), np.sort(shuffled[n_calib:])
    other_idx = np.flatnonzero(~np.isin(train_classes, normal_classes))
    val_idx = np.sort(np.random.default_rng([seed, 2]).permutation(other_idx)[:n_calib])
    return {
        "val_anomalies": train_images[val_idx],
        "train": train_images[train_idx],
        "calib": train_images[calib_idx],
        "test": np.asarray(test_images),
        "test_labels": (~np.isin(test_classes, normal_classes)).astype(np.int8),
        "test_classes": np.asarray(test_classes, dtype=np.int16),
    }


def write_images(name: str, params: PrepareParams, fmt: str, source: ImageSource, provenance: dict | str, out_dir: Path) -> Path:
    """Split ``source`` by the one-class protocol and write it, with schema.json, into ``out_dir`` (atomically)."""
    train, test = source.train, source.test
    if train.shape[1:] != test.shape[1:]:
        raise GadflowError(f"{name}: train images {train.shape[1:]} and test images {test.shape[1:]} differ in (C, H, W)")
    if train.shape[2] != train.shape[3]:
        raise GadflowError(f"{name}: images are {train.shape[2]}×{train.shape[3]}; only square images are supported")
    if fmt != "idx" and params.normal_classes != [0]:
        raise GadflowError(f"prepare.{name}.normal_classes: {fmt} datasets define normal by folder; leave it at [0]")
    splits = one_class_split(source, params.normal_classes, params.calibration_fraction, params.seed)
    schema = {
        "name": name,
        "kind": "image",
        "source": params.source,
        "format": fmt,
        "shape": list(train.shape[1:]),  # (C, H, W)
        "dtype": "uint8",
        "pixel_range": [0, 255],
        "normal_classes": params.normal_classes,
        "calibration_fraction": params.calibration_fraction,
        "seed": params.seed,
        "counts": {
            "train": len(splits["train"]),
            "calib": len(splits["calib"]),
            "test": len(splits["test"]),
            "test_anomalous": int(splits["test_labels"].sum()),
            "val_anomalies": len(splits["val_anomalies"]),
        },
        "files": {**SPLIT_FILES, **({"val_anomalies": VALIDATION_FILE} if len(splits["val_anomalies"]) else {})},
        "source_sha256": provenance,
    }
    with staged_dir(out_dir) as staging:
        for key, file in schema["files"].items():
            np.save(staging / file, splits[key])
        (staging / SCHEMA).write_text(json.dumps(schema, indent=1))
    log.info("%s: train %d, calib %d, test %d (%d anomalous), validation anomalies %d, images %s", name, *schema["counts"].values(), schema["shape"])
    return out_dir


# --- loading -------------------------------------------------------------------------------
class Data(PreparedData):
    """Memory-mapped, read-only uint8 (N, C, H, W) splits."""

    kind = "image"

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec("image", tuple(int(v) for v in self.schema["shape"]))

    def split(self, key: str) -> np.ndarray:
        return np.load(self.folder / SPLIT_FILES[key], mmap_mode="r")

    @cached_property
    def test_labels(self) -> np.ndarray:  # int8 (N_test,)
        return self.split("test_labels")

    @cached_property
    def test_classes(self) -> np.ndarray:  # int16 (N_test,): the source class (digit; 0/1 for folder layouts)
        return self.split("test_classes")

    @cached_property
    def val_anomalies(self) -> np.ndarray | None:
        file = self.schema["files"].get("val_anomalies")
        return None if file is None else np.load(self.folder / file, mmap_mode="r")

    def sample_grid(self, samples: np.ndarray) -> tuple[np.ndarray, int, str]:
        return samples, 8, ""

class Served(ServedInput):
    """Rows of C·H·W pixel values in [0, 255], row-major (C, H, W), columns p0 … p{C·H·W − 1}."""

    def example(self) -> pd.DataFrame:
        n = int(np.prod(self.detector.input_shape))
        return pd.DataFrame(np.zeros((2, n)), columns=[f"p{i}" for i in range(n)])

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        shape = self.detector.input_shape
        values = np.asarray(frame, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != int(np.prod(shape)):
            raise GadflowError(f"expected {int(np.prod(shape))} pixel columns (C, H, W = {shape}), got input of shape {values.shape}")
        if np.isnan(values).any() or values.min() < 0 or values.max() > 255:
            raise GadflowError("pixel values must be finite and within [0, 255]")
        return self.detector.score(np.rint(values).astype(np.uint8).reshape(-1, *shape))


def prepare(name: str, params: PrepareParams, spec, raw: Path, out_dir: Path, reader) -> Path:
    """Read the source with its format's reader module (``read_images``) and write the one-class split."""
    if spec is None:  # a generated set (the generate stage): its reader names the files it wrote
        files, fmt, provenance = reader.generated_files(raw), "rgbd_npy", "generated (see params `generate`)"
    else:
        files, fmt, provenance = {role: raw / f.file for role, f in spec.files.items()}, spec.format, {role: f.sha256 for role, f in spec.files.items()}
    return write_images(name, params, fmt, reader.read_images(files, spec), provenance, out_dir)
