"""Sliding windows over a multivariate series, and the mapping of window scores back to time points.

A series is an array (T, C): T time points, C channels. A window is ``seq_len`` consecutive
points; window w starts at ``starts[w]`` and covers points starts[w] .. starts[w] + seq_len - 1.

Starts are 0, stride, 2·stride, ... while a whole window fits. The **tail rule** says what
happens to the points after the last such window (there are some whenever
(T − seq_len) is not a multiple of stride):

- ``align_end`` (default): one more window ending exactly at the last point is added, so every
  point is covered by at least one window and gets a score;
- ``drop``: the tail points are left uncovered (their point score is NaN).

A series shorter than ``seq_len`` has no window; that is an error, never a silent empty result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .errors import GadflowError

TailRule = Literal["align_end", "drop"]
LabelRule = Literal["any", "last", "majority"]
PointRule = Literal["mean", "max"]


def window_starts(n_points: int, seq_len: int, stride: int, tail: TailRule = "align_end") -> np.ndarray:
    """Start index of every window, int64 (W,), increasing."""
    if seq_len < 1 or stride < 1:
        raise GadflowError(f"seq_len and stride must be ≥ 1 (got seq_len={seq_len}, stride={stride})")
    if n_points < seq_len:
        raise GadflowError(f"series of {n_points} points is shorter than one window (seq_len={seq_len})")
    starts = np.arange(0, n_points - seq_len + 1, stride, dtype=np.int64)
    last = n_points - seq_len
    if tail == "align_end" and starts[-1] != last:
        starts = np.append(starts, np.int64(last))
    elif tail not in ("align_end", "drop"):
        raise GadflowError(f"tail rule must be 'align_end' or 'drop' (got {tail!r})")
    return starts


@dataclass(frozen=True)
class Windows:
    """The windows of one series, held as the series plus start indices (no window is stored).

    ``windows[i]`` (an int, slice or index array) gathers those windows into a new array
    (B, seq_len, C); the full set is never materialised unless asked for with ``windows[:]``.
    """

    series: np.ndarray  # (T, C)
    starts: np.ndarray  # (W,) int64
    seq_len: int

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self), self.seq_len, int(self.series.shape[1]))

    def view(self) -> np.ndarray:
        """Every window position as a read-only view (T − seq_len + 1, seq_len, C) sharing the series' memory."""
        return sliding_window_view(self.series, self.seq_len, axis=0).transpose(0, 2, 1)

    def __getitem__(self, index) -> np.ndarray:
        return self.view()[self.starts[index]]


def sliding_windows(series: np.ndarray, seq_len: int, stride: int, tail: TailRule = "align_end") -> Windows:
    """The windows of ``series`` (T, C) with the given length, stride and tail rule."""
    series = np.asarray(series)
    if series.ndim != 2:
        raise GadflowError(f"series must be 2-D (time, channels), got shape {series.shape}")
    return Windows(series, window_starts(series.shape[0], seq_len, stride, tail), seq_len)


class WindowStack:
    """The windows of several series, one after another, as a read-only (N, seq_len, C) array-like.

    Nothing is gathered until it is indexed: ``stack[i]`` (an int, slice or index array) gathers those
    windows into a new array, so a split of windows costs the memory of its series (memory-mapped)
    plus the batch being read. ``np.asarray(stack)`` materialises every window; the pipeline never does.
    """

    ndim = 3

    def __init__(self, parts: Sequence[Windows]) -> None:
        if not parts:
            raise GadflowError("a window stack needs at least one series")
        if len({(w.seq_len, w.series.shape[1], w.series.dtype) for w in parts}) != 1:
            raise GadflowError("every series of a window stack needs the same seq_len, channel count and dtype")
        self.parts = tuple(parts)
        self.offsets = np.cumsum([0] + [len(w) for w in parts])  # (P + 1,): part p holds windows offsets[p] .. offsets[p+1] − 1

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self), *self.parts[0].shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.parts[0].series.dtype

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return self[np.array([index])][0]
        rows = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index, dtype=np.int64)
        if rows.ndim != 1:
            raise GadflowError(f"a window stack is indexed by an int, a slice or a 1-D index array, got shape {rows.shape}")
        if rows.size and (rows.min() < -len(self) or rows.max() >= len(self)):
            raise IndexError(f"window index out of range for {len(self)} windows")
        rows = np.where(rows < 0, rows + len(self), rows)
        part = np.searchsorted(self.offsets, rows, side="right") - 1  # (B,) which series each row comes from
        out = np.empty((rows.size, *self.shape[1:]), dtype=self.dtype)
        for p in np.unique(part):
            mask = part == p
            out[mask] = self.parts[p][rows[mask] - self.offsets[p]]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.empty(self.shape, dtype=self.dtype)  # filled part by part: no temporary copy of a part
        for w, start, stop in zip(self.parts, self.offsets[:-1], self.offsets[1:]):
            np.take(w.view(), w.starts, axis=0, out=out[start:stop])
        return out if dtype is None else out.astype(dtype, copy=False)

    def first_nonfinite(self) -> int | None:
        """Index of the first window holding a NaN or infinite value, or None; reads each series point once."""
        for p, w in enumerate(self.parts):
            bad_points = np.flatnonzero(~np.isfinite(w.series).all(axis=1))  # (K,) in time order
            if bad_points.size:
                # the first window whose span [start, start + seq_len) holds a bad point
                ends = w.starts + w.seq_len
                hit = (np.searchsorted(bad_points, w.starts, side="left") < np.searchsorted(bad_points, ends, side="left"))
                if hit.any():
                    return int(self.offsets[p] + np.flatnonzero(hit)[0])
        return None


def window_labels(point_labels: np.ndarray, starts: np.ndarray, seq_len: int, rule: LabelRule = "any") -> np.ndarray:
    """Label of each window (W,) int8 from the 0/1 point labels (T,).

    - ``any``: 1 when any point of the window is anomalous (MAD-GAN's rule);
    - ``last``: the label of the window's last point (the point a streaming detector scores);
    - ``majority``: 1 when more than half of the window's points are anomalous.
    """
    labels = np.asarray(point_labels).astype(np.int64)
    # counts[w] = anomalous points in window w, from a prefix sum: O(T + W) whatever seq_len is.
    prefix = np.concatenate([[0], np.cumsum(labels)])
    counts = prefix[starts + seq_len] - prefix[starts]
    if rule == "any":
        out = counts > 0
    elif rule == "last":
        out = labels[starts + seq_len - 1] > 0
    elif rule == "majority":
        out = 2 * counts > seq_len
    else:
        raise GadflowError(f"window label rule must be 'any', 'last' or 'majority' (got {rule!r})")
    return out.astype(np.int8)


def point_scores(window_scores: np.ndarray, starts: np.ndarray, seq_len: int, n_points: int, how: PointRule = "mean") -> np.ndarray:
    """Score of each time point (n_points,) float64 from the scores of the windows that cover it.

    ``mean`` averages the covering windows' scores, ``max`` takes the largest. A point no window
    covers (the tail under the ``drop`` rule) is NaN.
    """
    window_scores = np.asarray(window_scores, dtype=np.float64)
    if window_scores.shape != starts.shape:
        raise GadflowError(f"{window_scores.shape[0]} window scores for {starts.shape[0]} windows")
    # Points of window w are starts[w] + offsets; the flat index lists every (window, point) pair: (W * seq_len,)
    points = (starts[:, None] + np.arange(seq_len)[None, :]).ravel()
    values = np.repeat(window_scores, seq_len)
    covered = np.bincount(points, minlength=n_points)[:n_points]
    if how == "mean":
        total = np.bincount(points, weights=values, minlength=n_points)[:n_points]
        with np.errstate(invalid="ignore", divide="ignore"):
            out = total / covered
    elif how == "max":
        out = np.full(n_points, -np.inf)
        np.maximum.at(out, points, values)
    else:
        raise GadflowError(f"point score rule must be 'mean' or 'max' (got {how!r})")
    out[covered == 0] = np.nan
    return out


def point_channel_scores(window_channel_scores: np.ndarray, starts: np.ndarray, n_points: int, how: PointRule = "mean") -> np.ndarray:
    """Per-channel point scores (n_points, C) from per-window, per-point, per-channel scores (W, seq_len, C).

    Used for sensor attribution: the residual of channel c at point t, pooled over the windows
    covering t (mean or max). Uncovered points are NaN.
    """
    values = np.asarray(window_channel_scores, dtype=np.float64)  # (W, seq_len, C)
    n_windows, seq_len, n_channels = values.shape
    points = (starts[:, None] + np.arange(seq_len)[None, :]).ravel()  # (W * seq_len,)
    flat = values.reshape(-1, n_channels)  # (W * seq_len, C)
    covered = np.bincount(points, minlength=n_points)[:n_points]
    if how == "mean":
        out = np.zeros((n_points, n_channels))
        np.add.at(out, points, flat)
        with np.errstate(invalid="ignore", divide="ignore"):
            out /= covered[:, None]
    elif how == "max":
        out = np.full((n_points, n_channels), -np.inf)
        np.maximum.at(out, points, flat)
    else:
        raise GadflowError(f"point score rule must be 'mean' or 'max' (got {how!r})")
    out[covered == 0] = np.nan
    return out
