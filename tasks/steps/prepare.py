"""Prepare stage: a downloaded (or generated) dataset -> its one-class train / calib / test split, by its data kind's adapter.

A `prepare` entry (``PrepareParams``) and its sections are declared here: ``kdd99:`` (the KDD99 protocol, read by
tasks.sources.kdd99), ``series:`` (windowing, read by the series adapter and the series readers) and ``sequences:``
(image sequences, read by tasks.sources.mnist_sequences). They live beside the step, not beside their readers, so
that the stage of one format does not run (and depend on) the readers of the others.

The kind follows from the source's format and the entry's sections: a series format, or any source with a `series:`
section, gives windows of a time series; kdd99 without one gives feature rows; everything else gives images.
The reader of the format is looked up in ``READERS``, the one table that says which module reads what.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from ..adapters import adapter
from ..settings import Name, Strict
from ..sources.download import SERIES_FORMATS, TABULAR_FORMATS, DatasetSpec

GENERATED_FORMAT = "rgbd_npy"  # what the generate stage writes
READERS = {  # (data kind, source format) -> the module that reads it
    ("image", "idx"): "tasks.sources.idx",
    ("image", "png_folder"): "tasks.sources.png_folder",
    ("image", "rgbd_npy"): "tasks.sources.rgbd",
    ("image", "rgbd_png"): "tasks.sources.rgbd_png",
    ("tabular", "kdd99"): "tasks.sources.kdd99",
    ("series", "skab"): "tasks.sources.skab",
    ("series", "smd"): "tasks.sources.smd",
    ("series", "swat"): "tasks.sources.swat_wadi",
    ("series", "wadi"): "tasks.sources.swat_wadi",
    ("series", "kdd99"): "tasks.sources.kdd99",  # KDD99 read as one sequence in record order
    ("series", "idx"): "tasks.sources.mnist_sequences",  # image sequences: one digit's frames, other digits inserted
}


class KDD99Protocol(Strict):
    """How a kdd99 dataset is split (the EGBAD / ALAD / DAGMM paper protocol by default).

    The rows whose label is in ``anomaly_labels`` are the anomaly class; every other row is the
    inlier class the model trains on. A seeded ``test_fraction`` of the 10% file is the test half
    (or, with ``test_file: corrected``, the labelled `corrected` file is the test set).
    """

    anomaly_labels: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] = ["normal."]
    test_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    test_file: Literal["split", "corrected"] = "split"
    numeric_transform: Literal["log1p", "none"] = "log1p"  # applied to numeric columns before min-max scaling


class SeriesParams(Strict):
    """How a time-series dataset becomes windows (MAD-GAN's defaults: seq_len 30, stride 10).

    The training series is split chronologically: its last ``calibration_fraction`` (PrepareParams) is
    the normal calibration series. Scaling and PCA are fitted on the training part only.
    """

    machines: Annotated[list[Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$")]], Field(min_length=1)] | None = None  # smd: which machines (default: all declared)
    train_rows: Annotated[int, Field(ge=2)] | None = None  # skab: normal rows at the start of each file (SKAB's protocol: 400)
    files: Annotated[list[str], Field(min_length=1)] | None = None  # skab: which experiment files, in this order (default: all declared)
    # swat, wadi: rows dropped from the start of the normal file (MAD-GAN drops SWaT's first 21,600: its 6 h start-up); default 0
    skip_rows: Annotated[int, Field(ge=0)] | None = None
    seq_len: Annotated[int, Field(ge=2, le=10_000)] = 30
    stride: Annotated[int, Field(ge=1, le=10_000)] = 10
    tail: Literal["align_end", "drop"] = "align_end"  # align_end: one more window ends at the last point, so every point is scored
    label_rule: Literal["any", "last", "majority"] = "any"  # a window is anomalous when any (its last, most) point is
    point_rule: Literal["mean", "max"] = "max"  # a point's score from the windows covering it
    scaling: Literal["minmax", "standard", "none"] = "minmax"
    pca_components: Annotated[int, Field(ge=1, le=10_000)] | None = None  # keep the top principal components (MAD-GAN); None = all channels

    @model_validator(mode="after")
    def _windows_cover_every_point(self) -> "SeriesParams":
        if self.stride > self.seq_len:
            raise ValueError(f"stride {self.stride} > seq_len {self.seq_len} leaves points between windows unscored")
        return self

    def windowing(self) -> dict:
        """What makes windows of a series and points of window scores: recorded in schema.json and shipped with a model."""
        return self.model_dump(exclude={"machines", "train_rows", "files", "skip_rows"})


class ImageSequenceParams(Strict):
    """MNIST image sequences (an idx source with `series:`): one digit's images in sequences, other digits' inserted in test."""

    length: Annotated[int, Field(ge=2, le=100_000)] = 100  # frames per sequence
    anomaly_rate: Annotated[float, Field(gt=0.0, le=0.3)] = 0.1  # share of each test sequence's frames that are other digits
    max_run: Annotated[int, Field(ge=1, le=100)] = 3  # anomalous frames come in runs of 1..max_run consecutive frames


class PrepareParams(Strict):
    """One-class split: train = normal training samples minus a seeded normal calibration split."""

    source: Name  # a key of `download` or of `generate`
    normal_classes: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)] = [0]  # idx labels that are normal
    calibration_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    seed: int = 0
    kdd99: KDD99Protocol | None = None  # kdd99 sources only (defaults apply when absent)
    series: SeriesParams | None = None  # time-series sources (skab, smd; defaults apply when absent); on kdd99: read it as a sequence;
    # on an idx image source: image sequences (frames are the time steps), shaped by `sequences`
    sequences: ImageSequenceParams | None = None


def source_format(spec: DatasetSpec | None) -> str:
    return spec.format if spec is not None else GENERATED_FORMAT


def data_kind(params: PrepareParams, fmt: str) -> str:
    """'series', 'tabular' or 'image': the adapter that prepares and loads this entry."""
    if fmt in SERIES_FORMATS or params.series is not None:
        return "series"
    return "tabular" if fmt in TABULAR_FORMATS else "image"


def reader_module(params: PrepareParams, fmt: str) -> str:
    kind = data_kind(params, fmt)
    if (kind, fmt) not in READERS:
        raise KeyError(f"no reader for {kind} data of format {fmt}")
    return READERS[(kind, fmt)]


def prepare_dataset(name: str, params: PrepareParams, spec: DatasetSpec | None, raw: Path, out_dir: Path) -> Path:
    """Build the one-class train / calib / test split of one dataset into ``out_dir`` (spec None: a generated set)."""
    fmt = source_format(spec)
    reader = import_module(reader_module(params, fmt))
    return adapter(data_kind(params, fmt)).prepare(name, params, spec, Path(raw), Path(out_dir), reader)
