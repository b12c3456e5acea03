"""The rgbd_png format: an archive of <id>_rgb.png (8-bit RGB) and <id>_depth.png (16-bit) pairs in the split folders.

Depth is mapped from the dataset's declared ``depth_range`` to 0..255, a fixed range never fitted on the data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.errors import GadflowError

from ..adapters.image import ImageSource, check_files
from .archives import folder_source, folder_splits


def read_rgbd_png_pairs(folder: Path, depth_range: tuple[float, float]) -> np.ndarray:
    """<id>_rgb.png (8-bit RGB) + <id>_depth.png (16-bit) pairs -> uint8 (N, 4, H, W).

    Depth is mapped linearly from depth_range (a fixed, declared range: never fitted on the data) to 0..255.
    """
    from PIL import Image

    rgb_files = sorted(folder.glob("*_rgb.png"))
    depth_files = sorted(folder.glob("*_depth.png"))
    ids = [f.name.removesuffix("_rgb.png") for f in rgb_files]
    depth_ids = [f.name.removesuffix("_depth.png") for f in depth_files]
    if not rgb_files:
        raise GadflowError(f"{folder}: no <id>_rgb.png frames")
    if ids != depth_ids:
        missing = sorted(set(ids) ^ set(depth_ids))[:3]
        raise GadflowError(f"{folder}: colour and depth frames do not pair up (e.g. {', '.join(missing)} has only one of *_rgb.png / *_depth.png)")
    lo, hi = depth_range
    frames, first = [], None
    for frame_id, rgb_file, depth_file in zip(ids, rgb_files, depth_files):
        with Image.open(rgb_file) as img:
            if img.mode != "RGB":
                raise GadflowError(f"{rgb_file}: colour frame must be 8-bit RGB (3 channels), got mode {img.mode}")
            rgb = np.asarray(img, dtype=np.uint8)
        with Image.open(depth_file) as img:
            if img.mode not in ("I;16", "I;16B", "I"):
                raise GadflowError(f"{depth_file}: depth frame must be a 16-bit single-channel PNG, got mode {img.mode}")
            depth = np.asarray(img, dtype=np.float64)
        if depth.shape != rgb.shape[:2]:
            raise GadflowError(f"{depth_file}: depth is {depth.shape[1]}×{depth.shape[0]} but its colour frame is {rgb.shape[1]}×{rgb.shape[0]}")
        if first is None:
            first = (frame_id, rgb.shape)
        elif rgb.shape != first[1]:
            raise GadflowError(f"{rgb_file}: frame size {rgb.shape[1]}×{rgb.shape[0]} differs from {first[0]}'s {first[1][1]}×{first[1][0]}")
        depth8 = np.rint(np.clip((depth - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
        frames.append(np.concatenate([rgb, depth8[..., None]], axis=-1).transpose(2, 0, 1))
    return np.stack(frames)


def read_images(files: dict[str, Path], spec) -> ImageSource:
    """The role archive -> 4-channel images (R, G, B, depth), class 0 normal, 1 anomalous."""
    check_files(files)
    return folder_source(folder_splits(files["archive"], lambda folder: read_rgbd_png_pairs(folder, spec.depth_range)))
