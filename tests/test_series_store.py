"""Prepared-series Arrow files: round trip, series order, memory-mapped read-only views, atomic writes, clear errors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.errors import GadflowError
from models.windowing import sliding_windows
from tasks.adapters.series_store import Series, read_split, write_split


def series(n: int, channels: int, seed: int, anomalous: slice | None = None) -> Series:
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, dtype=np.int8)
    if anomalous is not None:
        labels[anomalous] = 1
    return Series(rng.normal(size=(n, channels)).astype(np.float32), labels)


def test_round_trip_keeps_names_order_values_and_labels(tmp_path):
    split = {"valve1/0": series(50, 3, 0, slice(10, 20)), "b": series(7, 3, 1), "a": series(31, 3, 2, slice(0, 1))}
    back = read_split(write_split(tmp_path / "test.arrow", split))
    assert list(back) == ["valve1/0", "b", "a"]
    for name, s in split.items():
        np.testing.assert_array_equal(back[name].values, s.values)
        np.testing.assert_array_equal(back[name].labels, s.labels)
        assert back[name].values.dtype == np.float32 and back[name].labels.dtype == np.int8


def test_series_are_read_only_views_of_the_mapped_file_and_windows_add_no_copy(tmp_path):
    back = read_split(write_split(tmp_path / "s.arrow", {"x": series(100, 4, 0), "y": series(100, 4, 1)}))
    for s in back.values():
        assert not s.values.flags.writeable and not s.values.flags.owndata  # views of the memory map, not copies
    windows = sliding_windows(back["x"].values, 30, 10)
    assert np.shares_memory(windows.view(), back["x"].values)


@pytest.mark.parametrize("split, message", [
    ({}, "at least one series"),
    ({"a": series(5, 2, 0), "b": series(5, 3, 0)}, "same channel count"),
    ({"a": Series(np.zeros((5, 2), np.float32), np.zeros(4, np.int8))}, "needs values \\(T, C\\) and labels \\(T,\\)"),
])
def test_bad_splits_are_refused(tmp_path, split, message):
    with pytest.raises(GadflowError, match=message):
        write_split(tmp_path / "bad.arrow", split)
    assert not (tmp_path / "bad.arrow").exists()


def test_reading_a_missing_or_foreign_file_is_a_clear_error(tmp_path):
    with pytest.raises(GadflowError, match="run the prepare stage"):
        read_split(tmp_path / "none.arrow")
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "other.parquet")
    with pytest.raises(GadflowError, match="not a prepared series file"):
        read_split(tmp_path / "other.parquet")
