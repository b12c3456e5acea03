"""Arrow storage of prepared multivariate series, memory-mapped back without copies.

A split (train, calib or test) is a set of named series, stored as one uncompressed Arrow IPC file
with one record batch per series, in order, each named in its batch metadata:

    t: int64    values: fixed_size_list<float32>[C]    label: int8      (one row per time point)

Series are written one at a time (``SplitWriter``), so preparing a dataset never holds a second copy
of it. ``read_split`` memory-maps the file: each series' values are a (T, C) float32 view of the
mapped file, and windows are views of those (``models.windowing``), so a split sits in memory once,
and only the pages actually read are loaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from models.errors import GadflowError
from models.storage import atomic_open

NAME_KEY = b"gadflow.series"  # record-batch metadata: the series name


@dataclass(frozen=True)
class Series:
    values: np.ndarray  # (T, C) float32
    labels: np.ndarray  # (T,) int8: 1 = anomalous point (all 0 for unlabelled training data)


def _schema(n_channels: int) -> pa.Schema:
    return pa.schema([("t", pa.int64()), ("values", pa.list_(pa.float32(), n_channels)), ("label", pa.int8())])


class SplitWriter:
    """Appends series to one split file, each as its own record batch named in the batch's metadata; see ``split_writer``."""

    def __init__(self, sink, path: Path) -> None:
        self._sink, self._path = sink, path
        self._writer = None  # opened with the first series, when the channel count is known
        self.names: list[str] = []
        self.n_channels: int | None = None

    def write(self, name: str, series: Series) -> None:
        values, labels = series.values, series.labels
        if values.ndim != 2 or labels.shape != (values.shape[0],):
            raise GadflowError(f"{self._path}: series '{name}' needs values (T, C) and labels (T,), got {values.shape} and {labels.shape}")
        if self.n_channels is not None and values.shape[1] != self.n_channels:
            raise GadflowError(f"{self._path}: every series of a split needs the same channel count, got {self.n_channels} and {values.shape[1]}")
        if name in self.names:
            raise GadflowError(f"{self._path}: series '{name}' written twice")
        if self._writer is None:
            self.n_channels = values.shape[1]
            self._writer = pa.ipc.new_file(self._sink, _schema(self.n_channels))
        flat = pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1), type=pa.float32())
        batch = pa.record_batch([pa.array(np.arange(len(labels), dtype=np.int64)), pa.FixedSizeListArray.from_arrays(flat, self.n_channels),
                                 pa.array(labels.astype(np.int8))], schema=_schema(self.n_channels))
        self._writer.write_batch(batch, custom_metadata={NAME_KEY: name.encode()})  # on disk now; nothing is kept
        self.names.append(name)

    def close(self) -> None:
        if self._writer is None:
            raise GadflowError(f"{self._path}: a split needs at least one series")
        self._writer.close()


@contextmanager
def split_writer(path: Path) -> Iterator[SplitWriter]:
    """Write a split atomically: into a temp file beside ``path``, renamed over it only when every series is in."""
    with atomic_open(Path(path)) as sink:
        writer = SplitWriter(sink, Path(path))
        yield writer
        writer.close()


def write_split(path: Path, series: dict[str, Series]) -> Path:
    """Write the named series of one split to ``path`` atomically."""
    with split_writer(path) as writer:
        for name, s in series.items():
            writer.write(name, s)
    return Path(path)


def read_split(path: Path) -> dict[str, Series]:
    """The named series of a split, in stored order; values and labels are read-only views of the mapped file."""
    path = Path(path)
    if not path.is_file():
        raise GadflowError(f"{path}: prepared series not found (run the prepare stage)")
    try:
        reader = pa.ipc.open_file(pa.memory_map(str(path), "r"))
        n_channels = reader.schema.field("values").type.list_size
    except (pa.ArrowInvalid, KeyError, AttributeError):
        raise GadflowError(f"{path}: not a prepared series file (expected an Arrow file written by the prepare stage)") from None
    if reader.num_record_batches == 0:
        raise GadflowError(f"{path}: holds no series")
    out: dict[str, Series] = {}
    for i in range(reader.num_record_batches):
        batch, metadata = reader.get_batch_with_custom_metadata(i)
        if metadata is None or NAME_KEY not in metadata:
            raise GadflowError(f"{path}: record batch {i} has no series name (not written by the prepare stage)")
        name = metadata[NAME_KEY].decode()
        values = batch.column(1).flatten().to_numpy(zero_copy_only=True).reshape(-1, n_channels)  # (T, C), mapped
        out[name] = Series(values, batch.column(2).to_numpy(zero_copy_only=True))
    return out
