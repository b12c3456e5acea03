"""Prepare stage: the one-class protocol, written as memory-mappable .npy files plus schema.json
(images), or as parquet tables plus schema.json and the fitted preprocessor (tabular: kdd99).

train  = normal training samples minus a seeded normal calibration split
calib  = that held-out normal split (thresholds and p-values are fitted on it, never on test)
test   = the full test set, label 0 = normal class, 1 = anomaly
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NONE

from models.errors import GadflowError

from .config import SERIES_FORMATS, DatasetSpec, PrepareParams
from .files import staged_dir
from .formats import SPLIT_ROLES, idx_images, idx_labels, png_folder_splits, read_rgbd_npy, rgbd_png_splits

log = logging.getLogger(__name__)

SCHEMA = "schema.json"
SPLIT_FILES = {"train": "train.npy", "calib": "calib.npy", "test": "test.npy", "test_labels": "test_labels.npy", "test_classes": "test_classes.npy"}
VALIDATION_FILE = "val_anomalies.npy"  # held-out training images of the non-normal classes (when the source has them)


@dataclass(frozen=True)
class PreparedData:
    """A prepared dataset whose splits are read on first use, so each step reads only what it needs.

    Images: memory-mapped, read-only uint8 arrays. Tabular: float32 feature arrays read from parquet.
    Series: a ``WindowStack`` of float32 windows (N, seq_len, C) over the memory-mapped series of a split;
    windows are gathered batch by batch, so a split sits in memory once, as its series.
    """

    folder: Path
    schema: dict

    @property
    def kind(self) -> str:
        return self.schema.get("kind", "image")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) or (D,)."""
        return tuple(int(v) for v in self.schema["shape"])

    @property
    def channels(self) -> int:
        return int(self.schema["shape"][0])

    @property
    def size(self) -> int:
        return int(self.schema["shape"][1])

    @cached_property
    def train(self) -> np.ndarray:  # uint8 (N_train, C, H, W) | float32 (N_train, D) | WindowStack (N_train, seq_len, C)
        return self._split("train")

    @cached_property
    def calib(self) -> np.ndarray:  # uint8 (N_calib, C, H, W) | float32 (N_calib, D) | WindowStack
        return self._split("calib")

    @cached_property
    def test(self) -> np.ndarray:  # uint8 (N_test, C, H, W) | float32 (N_test, D) | WindowStack
        return self._split("test")

    @cached_property
    def test_labels(self) -> np.ndarray:  # int8 (N_test,), 1 = anomaly
        if self.kind == "series":  # window labels by the windowing's label rule
            from models.windowing import window_labels

            rule = self.schema["windowing"]["label_rule"]
            return np.concatenate([window_labels(s.labels, w.starts, w.seq_len, rule) for _, s, w in self.series_windows("test")])
        if self.kind == "tabular":
            return self._test_table(["label"]).column("label").to_numpy().astype(np.int8)
        return self._split("test_labels")

    @cached_property
    def test_classes(self) -> np.ndarray:  # (N_test,): int16 source class (digit; the label for PNG folders) | str label (kdd99) | series name
        if self.kind == "series":
            return np.concatenate([np.full(len(w), name, dtype=object) for name, _, w in self.series_windows("test")])
        if self.kind == "tabular":
            return np.asarray(self._test_table(["class"]).column("class").to_pylist(), dtype=object)
        return self._split("test_classes")

    @cached_property
    def val_anomalies(self) -> np.ndarray | None:
        """Labelled anomalies kept apart from test (training images / rows of the anomaly classes), or None.
        With the calibration split as normals they form the validation set the promotion gate compares on."""
        file = self.schema.get("files", {}).get("val_anomalies")
        if file is None:
            return None
        if self.kind == "tabular":
            return self._feature_parquet(file)
        return np.load(self.folder / file, mmap_mode="r")

    def series_windows(self, key: str) -> list:
        """[(series name, Series, Windows)] of one split (train, calib, test), in stored order; windows are views."""
        from models.windowing import sliding_windows

        from .series_store import read_split

        cached = self.__dict__.setdefault("_series_cache", {})
        if key not in cached:
            w = self.schema["windowing"]
            cached[key] = [(name, s, sliding_windows(s.values, w["seq_len"], w["stride"], w["tail"]))
                           for name, s in read_split(self.folder / self.schema["files"][key]).items()]
        return cached[key]

    def _split(self, key: str) -> np.ndarray:
        if self.kind == "series":  # every window of the split, gathered only when indexed: (N, seq_len, C)
            from models.windowing import WindowStack

            return WindowStack([w for _, _, w in self.series_windows(key)])
        if self.kind != "tabular":
            return np.load(self.folder / SPLIT_FILES[key], mmap_mode="r")
        from .kdd99 import TABULAR_FILES

        return self._feature_parquet(TABULAR_FILES[key])

    def _feature_parquet(self, file: str) -> np.ndarray:  # float32 (N, D)
        import pyarrow.parquet as pq

        table = pq.read_table(self.folder / file, columns=self.schema["features"])
        return np.column_stack([table.column(name).to_numpy() for name in self.schema["features"]]).astype(np.float32, copy=False)

    def _test_table(self, columns: list[str]):
        import pyarrow.parquet as pq

        from .kdd99 import TABULAR_FILES

        return pq.read_table(self.folder / TABULAR_FILES["test"], columns=columns)


def check_prepared(folder: Path) -> dict:
    """The schema of a prepared folder, after checking that every file it lists is there (reads no data)."""
    folder = Path(folder)
    try:
        schema = json.loads((folder / SCHEMA).read_text())
    except FileNotFoundError:
        raise GadflowError(f"{folder}: prepared data incomplete ({SCHEMA} missing); run the prepare stage") from None
    files = schema.get("files", SPLIT_FILES)
    missing = [file for file in files.values() if not (folder / file).is_file()]
    if missing:
        raise GadflowError(f"{folder}: prepared data incomplete ({missing[0]} missing); run the prepare stage")
    return schema


def load_prepared(folder: Path) -> PreparedData:
    """The prepared dataset in ``folder``, after checking its files are all there (splits load on first use)."""
    return PreparedData(folder=Path(folder), schema=check_prepared(folder))


def one_class_split(
    train_images: np.ndarray, train_classes: np.ndarray, test_images: np.ndarray, test_classes: np.ndarray,
    normal_classes: list[int], calibration_fraction: float, seed: int,
) -> dict[str, np.ndarray]:
    """Split by the one-class protocol; the calibration split is a seeded draw from the normal training images.

    ``val_anomalies``: a seeded draw of as many training images of the other classes as the calibration split
    holds (fewer if there are fewer); empty when the training set has normal images only."""
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


def read_source(fmt: str, files: dict[str, Path], depth_range: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """-> train images, train classes, test images, test classes (folder layouts: class 0 normal, 1 anomalous)."""
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise GadflowError(f"raw file(s) missing: {', '.join(missing)}; run the download or generate stage")
    if fmt == "idx":
        train = idx_images(files["train_images"])
        test = idx_images(files["test_images"])
        return train, idx_labels(files["train_labels"], len(train)), test, idx_labels(files["test_labels"], len(test))
    if fmt == "rgbd_npy":
        splits = {folder: read_rgbd_npy(files[role]) for folder, role in SPLIT_ROLES.items()}
    elif fmt == "rgbd_png":
        splits = rgbd_png_splits(files["archive"], depth_range)
    else:
        splits = png_folder_splits(files["archive"])
    test = np.concatenate([splits["test/normal"], splits["test/anomalous"]])
    test_classes = np.repeat([0, 1], [len(splits["test/normal"]), len(splits["test/anomalous"])])
    train = splits["train/normal"]
    return train, np.zeros(len(train), dtype=np.int64), test, test_classes


def source_files(spec: DatasetSpec | None, raw: Path) -> tuple[str, dict[str, Path], tuple[float, float] | None]:
    """(format, role -> path, depth range) of a declared dataset, or of a generated one (spec None)."""
    if spec is None:  # the generate stage writes rgbd_npy splits under fixed names
        return "rgbd_npy", {role: raw / f"{role}.npy" for role in SPLIT_ROLES.values()}, None
    return spec.format, {role: raw / f.file for role, f in spec.files.items()}, spec.depth_range


@task(cache_policy=NONE, persist_result=False)
def prepare_dataset(name: str, params: PrepareParams, spec: DatasetSpec | None, raw: Path, out_dir: Path) -> Path:
    """Build the one-class train / calib / test split of one dataset into ``out_dir`` (spec None: a generated set)."""
    if spec is not None and spec.format == "kdd99" and params.series is None:
        from .kdd99 import prepare_kdd99

        return prepare_kdd99(name, params, spec, raw, out_dir)
    if spec is not None and (spec.format in SERIES_FORMATS or spec.format == "kdd99"):  # kdd99 with `series:`: one sequence
        from .series_prepare import prepare_series

        return prepare_series(name, params, spec, raw, out_dir)
    if spec is not None and spec.format == "idx" and params.series is not None:
        from .mnist_sequences import prepare_image_sequences

        return prepare_image_sequences(name, params, spec, raw, out_dir)
    if params.series is not None:
        raise GadflowError(f"prepare.{name}.series: only for time-series datasets")
    if params.kdd99 is not None:
        raise GadflowError(f"prepare.{name}.kdd99: only for kdd99 datasets")
    fmt, files, depth_range = source_files(spec, raw)
    train, train_classes, test, test_classes = read_source(fmt, files, depth_range)
    if train.shape[1:] != test.shape[1:]:
        raise GadflowError(f"{name}: train images {train.shape[1:]} and test images {test.shape[1:]} differ in (C, H, W)")
    if train.shape[2] != train.shape[3]:
        raise GadflowError(f"{name}: images are {train.shape[2]}×{train.shape[3]}; only square images are supported")
    if fmt != "idx" and params.normal_classes != [0]:
        raise GadflowError(f"prepare.{name}.normal_classes: {fmt} datasets define normal by folder; leave it at [0]")
    splits = one_class_split(train, train_classes, test, test_classes, params.normal_classes, params.calibration_fraction, params.seed)
    schema = {
        "name": name,
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
        "source_sha256": {role: f.sha256 for role, f in spec.files.items()} if spec else "generated (see params `generate`)",
    }
    with staged_dir(out_dir) as staging:
        for key, file in schema["files"].items():
            np.save(staging / file, splits[key])
        (staging / SCHEMA).write_text(json.dumps(schema, indent=1))
    log.info("%s: train %d, calib %d, test %d (%d anomalous), validation anomalies %d, images %s", name, *schema["counts"].values(), schema["shape"])
    return out_dir
