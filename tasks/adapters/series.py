"""The series adapter: multivariate time series stored as Arrow series, windowed on load; points for thresholds and users.

train  = the normal training series minus its chronological tail (or the source's own calibration series)
calib  = that tail (``calibration_fraction`` of each training series): thresholds are fitted on it
test   = the labelled test series (point labels; window labels follow ``series.label_rule``)

The scaling (and optional PCA) is fitted on the training series only and saved beside them (series_transform.json),
so it travels with the model. Windows are never written: they are views of the memory-mapped series, built on load.
A window model scores windows; users are alerted on time points, so each point gets the mean or max of the scores
of the windows covering it (``point_rule``), and thresholds are fitted on the calibration series' point scores.
"""

from __future__ import annotations

import json
import logging
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from models.errors import GadflowError
from models.inputs import InputSpec
from models.series_transform import SeriesTransform
from models.storage import atomic_write_text, staged_dir
from models.windowing import Windows, WindowStack, point_scores, sliding_windows, window_labels

from ..steps.prepare import SeriesParams
from .base import SCHEMA, PreparedData, ServedInput
from .series_store import Series, read_split, split_writer

if TYPE_CHECKING:
    from ..steps.prepare import PrepareParams

log = logging.getLogger(__name__)

SERIES_FILES = {"train": "train.arrow", "calib": "calib.arrow", "test": "test.arrow"}
TRANSFORM_FILE = "series_transform.json"  # beside the prepared series, and in a window model's folder
WINDOWING_FILE = "windowing.json"  # in a window model's folder: seq_len, stride, tail, label and point rules, input channel names


class SeriesSource(NamedTuple):
    """What a series source delivers (``tasks.sources``): named raw series, in order."""

    train: dict[str, np.ndarray]  # normal training series (T, C) float32
    test: dict[str, Series]  # labelled test series
    channels: list[str]  # the raw input channels
    notes: dict  # for schema.json
    calib: dict[str, np.ndarray] | None = None  # the normal calibration series; None: each training series' chronological tail
    extra_files: dict[str, object] | None = None  # file name -> JSON written beside the splits (SMD's interpretation labels)
    log1p: bool = False  # a fixed log(1 + x) before the scaling (KDD99's heavy-tailed counts)
    frame_shape: list[int] | None = None  # image sequences: each time step is a flattened (C, H, W) frame


def chronological_split(values: np.ndarray, calibration_fraction: float, min_len: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(T, C) -> the first and the last ``calibration_fraction`` of the rows; both must hold a window."""
    n_calib = int(round(calibration_fraction * len(values)))
    n_train = len(values) - n_calib
    if min(n_calib, n_train) < min_len:
        raise GadflowError(f"{what}: {len(values)} rows split {n_train} / {n_calib} (calibration_fraction {calibration_fraction}) "
                           f"leaves a part shorter than one window (seq_len {min_len})")
    return values[:n_train], values[n_train:]


def write_series(name: str, params: PrepareParams, fmt: str, source: SeriesSource, provenance: dict | str, out_dir: Path) -> Path:
    """Write train / calib / test series (transformed), the transform, and schema.json into ``out_dir`` (atomically)."""
    settings = params.series or SeriesParams()
    train_raw, test_raw = dict(source.train), dict(source.test)
    if source.calib is None:  # each training series' chronological tail is its calibration series
        train, calib = {}, {}
        for series_name, values in train_raw.items():
            train[series_name], calib[series_name] = chronological_split(values, params.calibration_fraction, settings.seq_len, f"{name}/{series_name}")
    else:
        train, calib = train_raw, dict(source.calib)
    for series_name, s in test_raw.items():
        if len(s.values) < settings.seq_len:
            raise GadflowError(f"{name}/{series_name}: test series of {len(s.values)} rows is shorter than one window (seq_len {settings.seq_len})")

    # Fitted on the training part only: calib and test are transformed with it, never fitted on.
    transform = SeriesTransform(settings.scaling, settings.pca_components, log1p=source.log1p).fit(list(train.values()))
    channels = source.channels
    schema = {
        "name": name,
        "kind": "series",
        "source": params.source,
        "format": fmt,
        "shape": [settings.seq_len, transform.n_outputs],  # one window: (seq_len, channels after PCA)
        **({"frame_shape": source.frame_shape} if source.frame_shape is not None else {}),
        "channels": channels if settings.pca_components is None else [f"pc_{i + 1}" for i in range(transform.n_outputs)],
        "input_channels": channels,
        "windowing": settings.windowing(),
        "calibration_fraction": params.calibration_fraction,
        "series": list(test_raw),
        "counts": {
            "train_points": int(sum(len(v) for v in train.values())),
            "calib_points": int(sum(len(v) for v in calib.values())),
            "test_points": int(sum(len(s.labels) for s in test_raw.values())),
            "test_anomalous_points": int(sum(int(s.labels.sum()) for s in test_raw.values())),
        },
        "files": {**SERIES_FILES, "transform": TRANSFORM_FILE, **{Path(f).stem: f for f in (source.extra_files or {})}},
        "source_sha256": provenance,
        **source.notes,
    }
    with staged_dir(out_dir) as staging:
        # One series at a time: transformed, written, and its raw rows released, so the data is never held twice.
        with split_writer(staging / SERIES_FILES["train"]) as train_out, split_writer(staging / SERIES_FILES["calib"]) as calib_out:
            for key, parts, out in (("train", train, train_out), ("calib", calib, calib_out)):
                for series_name in list(parts):
                    part = parts.pop(series_name)
                    out.write(series_name, Series(transform.transform(part), np.zeros(len(part), dtype=np.int8)))  # unlabelled: normal
        with split_writer(staging / SERIES_FILES["test"]) as test_out:
            for series_name in list(test_raw):
                test = test_raw.pop(series_name)
                test_out.write(series_name, Series(transform.transform(test.values), test.labels))
        transform.save(staging / TRANSFORM_FILE)
        for file, content in (source.extra_files or {}).items():
            atomic_write_text(staging / file, json.dumps(content))
        atomic_write_text(staging / SCHEMA, json.dumps(schema, indent=1))
    log.info("%s: %d series; train %d, calib %d, test %d points (%d anomalous); windows %s", name, len(schema["series"]), *schema["counts"].values(), schema["shape"])
    return out_dir


# --- loading -------------------------------------------------------------------------------
class Data(PreparedData):
    """A split is a ``WindowStack`` of float32 windows (N, seq_len, C) over the memory-mapped series of the split;
    windows are gathered batch by batch, so a split sits in memory once, as its series."""

    kind = "series"

    @property
    def input_spec(self) -> InputSpec:
        frame = self.schema.get("frame_shape")
        return InputSpec("window", tuple(int(v) for v in self.schema["shape"]), tuple(frame) if frame else None)

    @property
    def windowing(self) -> dict:
        return self.schema["windowing"]

    def series_windows(self, key: str) -> list[tuple[str, Series, Windows]]:
        """[(series name, Series, Windows)] of one split (train, calib, test), in stored order; windows are views."""
        cached = self.__dict__.setdefault("_series_cache", {})
        if key not in cached:
            w = self.windowing
            cached[key] = [(name, s, sliding_windows(s.values, w["seq_len"], w["stride"], w["tail"]))
                           for name, s in read_split(self.folder / self.schema["files"][key]).items()]
        return cached[key]

    def split(self, key: str) -> WindowStack:  # every window of the split, gathered only when indexed: (N, seq_len, C)
        return WindowStack([w for _, _, w in self.series_windows(key)])

    @cached_property
    def test_labels(self) -> np.ndarray:  # int8 (N_test_windows,): window labels by the label rule
        rule = self.windowing["label_rule"]
        return np.concatenate([window_labels(s.labels, w.starts, w.seq_len, rule) for _, s, w in self.series_windows("test")])

    @cached_property
    def test_classes(self) -> np.ndarray:  # (N_test_windows,) the series each window belongs to
        return np.concatenate([np.full(len(w), name, dtype=object) for name, _, w in self.series_windows("test")])

    # --- window scores -> point scores ---------------------------------------------------------
    def point_scores(self, split: str, window_scores: np.ndarray) -> dict[str, np.ndarray]:
        """Series name -> point scores (T,) float64 (NaN where uncovered), from the split's window scores in stored order."""
        rule = self.windowing["point_rule"]
        out, at = {}, 0
        for name, series, windows in self.series_windows(split):
            out[name] = point_scores(window_scores[at : at + len(windows)], windows.starts, windows.seq_len, len(series.labels), rule)
            at += len(windows)
        if at != len(window_scores):
            raise ValueError(f"{len(window_scores)} window scores for {at} windows of the {split} split")
        return out

    def threshold_scores(self, split: str, scores: np.ndarray) -> np.ndarray:
        """Every scored point of every series of the split, concatenated (N_points,): thresholds apply to points."""
        flat = np.concatenate(list(self.point_scores(split, scores).values()))
        return flat[np.isfinite(flat)]

    def score_tables(self, scores, calibration):
        """Window rows (index, label, class = series, score) and point rows (series, t, label, score, p_value, is_anomaly).

        A threshold and its calibration scores are about points, so only the point rows carry p-values and flags."""
        import pyarrow as pa

        windows = pa.table({"index": np.arange(len(scores), dtype=np.int64), "label": np.asarray(self.test_labels, dtype=np.int8),
                            "class": self.test_classes, "score": scores})
        by_series = self.point_scores("test", scores)
        names, times, labels, values = [], [], [], []
        for name, series, _ in self.series_windows("test"):
            keep = np.flatnonzero(np.isfinite(by_series[name]))  # points no window covers (tail rule 'drop') are left out
            names.append(np.full(len(keep), name, dtype=object))
            times.append(keep.astype(np.int64))
            labels.append(series.labels[keep])
            values.append(by_series[name][keep])
        score = np.concatenate(values)
        points = pa.table({
            "series": pa.array(np.concatenate(names), type=pa.string()).dictionary_encode(),
            "t": np.concatenate(times),
            "label": np.concatenate(labels).astype(np.int8),
            "score": score,
            "p_value": calibration.p_values(score),
            "is_anomaly": calibration.is_anomaly(score),
        })
        log.info("scored %d test windows, mapped to %d test points; %d flagged at threshold %.5g", len(scores), points.num_rows,
                 int(points["is_anomaly"].to_numpy().sum()), calibration.threshold)
        return {"scores": windows, "points": points}

    def evaluated(self, tables: dict[str, Path]) -> pd.DataFrame:
        return pd.read_parquet(tables["points"])  # metrics are about time points; window scores stay in scores.parquet

    def ship(self, model_dir: Path) -> None:
        """The scaling / PCA fitted on the training series and the windowing travel with the weights."""
        atomic_write_text(model_dir / TRANSFORM_FILE, (self.folder / TRANSFORM_FILE).read_text())
        atomic_write_text(model_dir / WINDOWING_FILE, json.dumps({**self.windowing, "input_channels": self.schema["input_channels"]}))

    def sample_grid(self, samples: np.ndarray) -> tuple[np.ndarray, int, str] | None:
        """Image sequences: one row of frames per generated window; other series have no picture."""
        from ..reports.plots import frames_as_images

        frame_shape = self.schema.get("frame_shape")
        if frame_shape is None:
            return None
        return frames_as_images(samples[:8], frame_shape), samples.shape[1], " (one window per row)"

    def protocol_note(self) -> str:
        return "; point scores are the " + self.windowing["point_rule"] + " of the covering windows' scores"


class Served(ServedInput):
    """Raw rows of one series, at least seq_len of them, in time order, with the training series' channel columns;
    one score per row (its point score: the mean or max over the windows covering it)."""

    @cached_property
    def transform(self) -> SeriesTransform:
        return SeriesTransform.load(self.model_dir / TRANSFORM_FILE)

    @cached_property
    def windowing(self) -> dict:
        return json.loads((self.model_dir / WINDOWING_FILE).read_text())

    def example(self) -> pd.DataFrame:
        """One window's worth of all-zero sensor rows."""
        w = self.windowing
        return pd.DataFrame(np.zeros((w["seq_len"], len(w["input_channels"]))), columns=w["input_channels"])

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        channels = self.windowing["input_channels"]
        missing = [c for c in channels if c not in frame.columns]
        if missing:
            raise GadflowError(f"input column '{missing[0]}' missing ({len(missing)} of the {len(channels)} sensor columns absent)")
        # float32 first, as the prepare stage stores raw values: the latent search's restarts are keyed by the
        # window's bytes, so the same rows must give the same bytes to give the pipeline's scores.
        raw = frame[channels].to_numpy(dtype=np.float32)
        values = self.transform.transform(raw)  # (T, K); refuses NaN
        w = self.windowing
        # Serving scores every row: one more window always ends at the last row (tail rule 'align_end', whatever
        # the training data used; the tail rule only decides which windows exist, not what a window is).
        windows = sliding_windows(values, w["seq_len"], w["stride"], "align_end")  # needs T >= seq_len
        window_scores = self.detector.score(windows[:])
        return point_scores(window_scores, windows.starts, w["seq_len"], len(values), w["point_rule"])


def prepare(name: str, params: PrepareParams, spec, raw: Path, out_dir: Path, reader) -> Path:
    """Read the named series with the source's reader module (``read_series``) and write the splits."""
    source = reader.read_series(name, spec, params, params.series or SeriesParams(), Path(raw))
    fmt = "mnist_sequences" if source.frame_shape is not None else spec.format
    return write_series(name, params, fmt, source, {role: f.sha256 for role, f in spec.files.items()}, out_dir)
