"""Archives of image folders (the png_folder and rgbd_png formats): safe extraction and the split folder layout.

An archive holds ``train/normal/``, ``test/normal/`` and ``test/anomalous/`` (under one root folder, at any depth).
"""

from __future__ import annotations

import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from models.errors import GadflowError

from ..adapters.image import ImageSource


def safe_extract(archive: Path, target: Path) -> None:
    """Extract a .tar(.gz)/.tgz/.zip archive, refusing any member that would land outside ``target``."""
    target = target.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                if not (target / member).resolve().is_relative_to(target):
                    raise GadflowError(f"{archive}: member '{member}' would extract outside the target folder")
            zf.extractall(target)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            try:
                tf.extractall(target, filter="data")  # refuses absolute paths, '..', links out, devices
            except tarfile.FilterError as exc:
                raise GadflowError(f"{archive}: unsafe member refused ({exc})") from None
    else:
        raise GadflowError(f"{archive}: not a .zip or .tar(.gz) archive")


SPLIT_FOLDERS = ("train/normal", "test/normal", "test/anomalous")  # the folder layout of archive formats
SPLIT_ROLES = {folder: folder.replace("/", "_") for folder in SPLIT_FOLDERS}  # file roles of rgbd_npy sets


def folder_splits(archive: Path, read_folder: Callable[[Path], np.ndarray]) -> dict[str, np.ndarray]:
    """Archive with train/normal, test/normal, test/anomalous -> uint8 (N, C, H, W) per split,
    each folder read by ``read_folder(folder)``; all splits must share (C, H, W)."""
    with tempfile.TemporaryDirectory() as tmp:
        safe_extract(archive, Path(tmp))
        roots = [p.parent.parent for p in Path(tmp).rglob("train/normal")]
        if len(roots) != 1:
            raise GadflowError(f"{archive}: expected one train/normal/ folder (with test/normal/ and test/anomalous/), found {len(roots)}")
        splits = {key: read_folder(roots[0] / key) for key in SPLIT_FOLDERS}
    shapes = {k: v.shape[1:] for k, v in splits.items()}
    if len(set(shapes.values())) != 1:
        raise GadflowError(f"{archive}: splits differ in (C, H, W): {shapes}")
    return splits


def folder_source(splits: dict[str, np.ndarray]) -> ImageSource:
    """Split folders -> the images and their classes: 0 for train/normal and test/normal, 1 for test/anomalous."""
    test = np.concatenate([splits["test/normal"], splits["test/anomalous"]])
    test_classes = np.repeat([0, 1], [len(splits["test/normal"]), len(splits["test/anomalous"])])
    train = splits["train/normal"]
    return ImageSource(train, np.zeros(len(train), dtype=np.int64), test, test_classes)
