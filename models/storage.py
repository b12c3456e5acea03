"""Atomic writes (the project's one way of writing a file or a folder) and checkpoint loading.

A file is written to a temporary name beside its target, flushed to disk and renamed over the target, so a
reader sees the old file or the new one, never half of one. A folder is built in a staging folder beside it
and swapped in with one rename. torch is imported only where a checkpoint is saved or loaded.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .errors import GadflowError


def default_mode(directory: bool = False) -> int:
    """The permission bits a plain open()/mkdir() would give under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


@contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """A binary file handle (readable too) on a temp file beside ``path``; on success it is fsynced and renamed over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w+b") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, default_mode())  # mkstemp makes 0600
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    with atomic_open(path) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def save_npy(path: Path, array: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.save(buf, array)
    return atomic_write_bytes(path, buf.getvalue())


def atomic_torch_save(path: Path, obj: dict[str, Any]) -> Path:
    import torch

    with atomic_open(path) as fh:
        torch.save(obj, fh)
    return Path(path)


@contextmanager
def staged_dir(out_dir: Path) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``out_dir``, on error it vanishes."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        yield staging
        os.chmod(staging, default_mode(directory=True))  # mkdtemp makes 0700
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def data_key(training_data, dtype=None, chunk_rows: int = 4096) -> str:
    """Identifies the training data a checkpoint was made on: sha256 of its bytes as ``dtype`` (16 hex digits).

    Read in chunks of rows, so an array-like such as a ``WindowStack`` is hashed without being
    materialised; the key is that of the whole C-contiguous array.
    """
    digest = hashlib.sha256()
    for start in range(0, len(training_data), chunk_rows):
        digest.update(np.ascontiguousarray(training_data[start : start + chunk_rows], dtype=dtype).data)
    return digest.hexdigest()[:16]


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint dict of tensors, numbers and strings; never unpickles arbitrary objects."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise GadflowError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, foreign pickle, truncated write
        raise GadflowError(f"{path}: not a loadable gadflow checkpoint ({type(exc).__name__})") from None
