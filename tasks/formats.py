"""Readers for the supported raw formats: IDX (optionally gzipped) and folders of PNG images.

Every reader fails with one line naming the file and what is wrong with it.
"""

from __future__ import annotations

import gzip
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from models.errors import GadflowError

IDX_UINT8 = 0x08


def read_idx(path: Path) -> np.ndarray:
    """IDX file (magic 0x0000 08 D, big-endian dims, uint8 payload) -> array of the declared shape."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise GadflowError(f"{path}: cannot read ({exc})") from None
    if len(raw) < 4 or raw[0:2] != b"\x00\x00":
        raise GadflowError(f"{path}: not an IDX file (magic bytes {raw[:4].hex() or 'missing'})")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != IDX_UINT8:
        raise GadflowError(f"{path}: IDX data type 0x{dtype_code:02x} not supported (only unsigned byte, 0x08)")
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise GadflowError(f"{path}: IDX header declares {ndim} dimensions but the file is {len(raw)} bytes")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64))
    actual = len(raw) - header
    if actual != expected:
        raise GadflowError(f"{path}: IDX header declares shape {dims} ({expected} bytes) but the file holds {actual} bytes of data")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def idx_images(path: Path) -> np.ndarray:
    """IDX images (N, H, W) or (N, H, W, C) -> uint8 (N, C, H, W)."""
    arr = read_idx(path)
    if arr.ndim == 3:
        return arr[:, None, :, :]
    if arr.ndim == 4:
        return np.ascontiguousarray(arr.transpose(0, 3, 1, 2))
    raise GadflowError(f"{path}: expected IDX images of 3 or 4 dimensions, got shape {arr.shape}")


def idx_labels(path: Path, n_images: int) -> np.ndarray:
    arr = read_idx(path)
    if arr.ndim != 1:
        raise GadflowError(f"{path}: expected IDX labels of 1 dimension, got shape {arr.shape}")
    if len(arr) != n_images:
        raise GadflowError(f"{path}: {len(arr)} labels for {n_images} images")
    return arr


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


SPLIT_FOLDERS = ("train/normal", "test/normal", "test/anomalous")  # the folder layout of archive formats
SPLIT_ROLES = {folder: folder.replace("/", "_") for folder in SPLIT_FOLDERS}  # file roles of rgbd_npy sets


def folder_splits(archive: Path, read_folder) -> dict[str, np.ndarray]:
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


def png_folder_splits(archive: Path) -> dict[str, np.ndarray]:
    """A png_folder archive -> uint8 arrays per split."""
    return folder_splits(archive, read_png_folder)


def read_rgbd_npy(path: Path) -> np.ndarray:
    """N×H×W×4 uint8 .npy (R, G, B, depth) -> uint8 (N, 4, H, W). Never unpickles."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise GadflowError(f"{path}: not a readable .npy array ({exc})") from None
    if arr.ndim != 4 or arr.shape[-1] != 4:
        raise GadflowError(f"{path}: expected RGB-D frames of shape (N, H, W, 4), got {arr.shape}")
    if arr.dtype != np.uint8:
        raise GadflowError(f"{path}: expected uint8 values, got {arr.dtype} (scale depth to 0..255 first)")
    return np.ascontiguousarray(np.asarray(arr).transpose(0, 3, 1, 2))


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


def rgbd_png_splits(archive: Path, depth_range: tuple[float, float]) -> dict[str, np.ndarray]:
    """An rgbd_png archive (colour + 16-bit depth pairs per split folder) -> uint8 arrays per split."""
    return folder_splits(archive, lambda folder: read_rgbd_png_pairs(folder, depth_range))
