"""The png_folder format: an archive of PNG images in train/normal/, test/normal/ and test/anomalous/ folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.errors import GadflowError

from ..adapters.image import ImageSource, check_files
from .archives import folder_source, folder_splits


def read_png_folder(folder: Path) -> np.ndarray:
    """All *.png in ``folder`` (sorted by name) -> uint8 (N, C, H, W); one size and mode required."""
    from PIL import Image

    files = sorted(folder.glob("*.png"))
    if not files:
        raise GadflowError(f"{folder}: no .png images")
    channels = {"L": 1, "RGB": 3, "RGBA": 4}
    images, first = [], None
    for file in files:
        with Image.open(file) as img:
            if img.mode not in channels:
                raise GadflowError(f"{file}: image mode {img.mode} not supported (L, RGB or RGBA)")
            arr = np.asarray(img, dtype=np.uint8).reshape(img.height, img.width, channels[img.mode])
        if first is None:
            first = (file, arr.shape)
        elif arr.shape != first[1]:
            raise GadflowError(f"{file}: shape (H, W, C) = {arr.shape} differs from {first[0].name}'s {first[1]}")
        images.append(arr.transpose(2, 0, 1))
    return np.stack(images)


def read_images(files: dict[str, Path], spec) -> ImageSource:
    """The role archive -> images, class 0 normal, 1 anomalous (all of one size and channel count)."""
    check_files(files)
    return folder_source(folder_splits(files["archive"], read_png_folder))
