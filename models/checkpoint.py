"""Atomic file writes and checkpoint save/load (always ``weights_only=True``).

torch is imported where a checkpoint is saved or loaded, so the atomic writers serve stages without torch.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import GadflowError

LAST_CHECKPOINT = "last.pt"  # the training checkpoint every detector's fit() keeps in its checkpoint folder


def default_mode(directory: bool = False) -> int:
    """The permission bits a plain open()/mkdir() would give under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def _atomic(path: Path, write) -> Path:
    """Write through a temp file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, default_mode())  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return _atomic(path, lambda fh: fh.write(data))


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(path: Path, obj: dict[str, Any]) -> Path:
    import torch

    return _atomic(path, lambda fh: torch.save(obj, fh))


def data_key(training_data, dtype=None, chunk_rows: int = 4096) -> str:
    """Identifies the training data a checkpoint was made on: sha256 of its bytes as ``dtype`` (16 hex digits).

    Read in chunks of rows, so an array-like such as a ``WindowStack`` is hashed without being
    materialised; the key is that of the whole C-contiguous array.
    """
    import numpy as np

    digest = hashlib.sha256()
    for start in range(0, len(training_data), chunk_rows):
        digest.update(np.ascontiguousarray(training_data[start : start + chunk_rows], dtype=dtype).data)
    return digest.hexdigest()[:16]


def checkpoint_identity(checkpoint: dict[str, Any]) -> tuple[str, str, str]:
    """(trained_as, training_key, data_key): what must match for a checkpoint to be resumed or reused."""
    return (str(checkpoint.get("trained_as")), str(checkpoint.get("training_key")), str(checkpoint.get("data_key")))


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
