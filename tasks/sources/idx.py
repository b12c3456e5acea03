"""The IDX format (MNIST's): images and labels as big-endian headers plus a uint8 payload, optionally gzipped.

Every reader fails with one line naming the file and what is wrong with it.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from models.errors import GadflowError

from ..adapters.image import ImageSource, check_files

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


def read_images(files: dict[str, Path], spec) -> ImageSource:
    """The roles train_images, train_labels, test_images, test_labels -> images and their classes (the labels)."""
    check_files(files)
    train = idx_images(files["train_images"])
    test = idx_images(files["test_images"])
    return ImageSource(train, idx_labels(files["train_labels"], len(train)), test, idx_labels(files["test_labels"], len(test)))
