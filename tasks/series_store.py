"""Parquet storage of prepared multivariate series, read back memory-mapped without copies.

A split (train, calib or test) is a set of named series. It is stored as one parquet file with a row
per time point:

    series: string (dictionary-encoded)  t: int64  values: fixed_size_list<float32>[C]  label: int8

Windows are not stored: they are zero-copy views of the series (``models.windowing``), so a split
sits in memory once, however small the stride. ``read_split`` memory-maps the file; the values of
each series are a (T, C) view of the file's float32 buffer (no copy when the file is uncompressed
and written by ``write_split``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from models.errors import GadflowError

from .files import atomic_write_bytes


@dataclass(frozen=True)
class Series:
    values: np.ndarray  # (T, C) float32
    labels: np.ndarray  # (T,) int8: 1 = anomalous point (all 0 for unlabelled training data)


def write_split(path: Path, series: dict[str, Series]) -> Path:
    """Write the named series of one split to ``path`` atomically."""
    if not series:
        raise GadflowError(f"{path}: a split needs at least one series")
    channels = {s.values.shape[1] for s in series.values()}
    if len(channels) != 1:
        raise GadflowError(f"{path}: every series of a split needs the same channel count, got {sorted(channels)}")
    (n_channels,) = channels
    names, times, values, labels = [], [], [], []
    for name, s in series.items():
        if s.values.ndim != 2 or s.labels.shape != (s.values.shape[0],):
            raise GadflowError(f"{path}: series '{name}' needs values (T, C) and labels (T,), got {s.values.shape} and {s.labels.shape}")
        names.append(np.full(len(s.labels), name, dtype=object))
        times.append(np.arange(len(s.labels), dtype=np.int64))
        values.append(np.ascontiguousarray(s.values, dtype=np.float32).reshape(-1))
        labels.append(s.labels.astype(np.int8))
    flat = pa.array(np.concatenate(values), type=pa.float32())
    table = pa.table({
        "series": pa.array(np.concatenate(names), type=pa.string()).dictionary_encode(),
        "t": pa.array(np.concatenate(times)),
        "values": pa.FixedSizeListArray.from_arrays(flat, n_channels),
        "label": pa.array(np.concatenate(labels)),
    })
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="none", use_dictionary=["series"])  # uncompressed: readable by memory map
    return atomic_write_bytes(Path(path), sink.getvalue().to_pybytes())


def read_split(path: Path) -> dict[str, Series]:
    """The named series of a split, in file order; values are read-only views where possible."""
    path = Path(path)
    if not path.is_file():
        raise GadflowError(f"{path}: prepared series not found (run the prepare stage)")
    table = pq.read_table(path, memory_map=True)
    missing = {"series", "t", "values", "label"} - set(table.column_names)
    if missing:
        raise GadflowError(f"{path}: not a prepared series file (missing columns {sorted(missing)})")
    n_channels = table.schema.field("values").type.list_size
    values = table.column("values").combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, n_channels)  # (N, C)
    labels = table.column("label").to_numpy()
    names = table.column("series").combine_chunks()
    if isinstance(names, pa.DictionaryArray):
        codes, dictionary = names.indices.to_numpy(zero_copy_only=False), names.dictionary.to_pylist()
    else:
        dictionary = sorted(set(names.to_pylist()))
        codes = np.array([dictionary.index(n) for n in names.to_pylist()])
    # Series are stored contiguously: find each one's [start, end) from where the code changes.
    change = np.flatnonzero(np.diff(codes)) + 1
    starts, ends = np.concatenate([[0], change]), np.concatenate([change, [len(codes)]])
    out: dict[str, Series] = {}
    for start, end in zip(starts, ends):
        name = dictionary[codes[start]]
        if name in out:
            raise GadflowError(f"{path}: series '{name}' is not stored contiguously")
        out[name] = Series(values[start:end], labels[start:end])
    return out
