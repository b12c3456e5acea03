"""params.yaml schema, the data half: the `download`, `generate` and `prepare` sections, and the base types.

Re-exported by ``tasks.config``, which holds the experiment sections and loads the whole file once.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.errors import GadflowError

NAME = r"^[a-z0-9][a-z0-9_-]*$"  # dataset and experiment names (used as folder and model names)
Name = Annotated[str, Field(pattern=NAME)]


TABULAR_FORMATS = ("kdd99",)  # dataset formats whose samples are feature rows, not images
SERIES_FORMATS = ("skab", "smd", "swat", "wadi")  # dataset formats of multivariate time series (samples are windows)
# Formats whose data its owners give out only on request: copied from the user's folder named by an environment variable.
USER_DATA_ENV = {"swat": "GADFLOW_SWAT_DIR", "wadi": "GADFLOW_WADI_DIR"}
SMD_PARTS = ("train", "test", "test_label", "interpretation_label")


class ParamsError(GadflowError):
    """params.yaml is invalid."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- download --------------------------------------------------------------------------------
class FileSpec(Strict):
    """One file of a dataset: where it comes from and what it must hash to (both required except for swat and wadi)."""

    # path on disk and in the mirror, relative to the dataset folder; may name sub-folders ("valve1/0.csv")
    file: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$")]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    urls: Annotated[list[Annotated[str, Field(pattern=r"^(https?|file)://\S+$")]], Field(min_length=1)] | None = None  # canonical first


class DatasetSpec(Strict):
    """A dataset declaration. Formats and the file roles they need:

    - ``idx``: train_images, train_labels, test_images, test_labels (IDX, optionally gzipped);
    - ``png_folder``: archive (.tar.gz/.tgz/.tar/.zip) holding train/normal/, test/normal/ and
      test/anomalous/ folders of PNG images, all of one size and channel count;
    - ``rgbd_npy``: train_normal, test_normal, test_anomalous, each an N×H×W×4 uint8 .npy (R, G, B, depth);
    - ``rgbd_png``: archive with the png_folder layout holding <id>_rgb.png (8-bit RGB) and
      <id>_depth.png (16-bit) pairs; depth is mapped from ``depth_range`` to 0..255;
    - ``kdd99``: train (the 10% file) and test (the labelled `corrected` file), headerless
      comma-separated KDD Cup 99 records, optionally gzipped (a tabular dataset);
    - ``swat``, ``wadi``: normal and attack, the official CSV files (``tasks.swat_wadi``). Their owners give
      them out only on request, so they have no URLs: they are copied from the folder named by the variable
      ``user_dir_env`` (default GADFLOW_SWAT_DIR / GADFLOW_WADI_DIR), and a declared sha256 is optional.
    """

    format: Literal["idx", "png_folder", "rgbd_npy", "rgbd_png", "kdd99", "skab", "smd", "swat", "wadi"]
    user_dir_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None  # swat, wadi: the variable naming your data's folder
    depth_range: tuple[float, float] | None = None  # rgbd_png only: raw 16-bit depth values mapped to 0 and 255
    mirror_dir: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$")] | None = None  # folder under GADFLOW_DATA_MIRROR (default: the dataset's name)
    # Files without `urls` are fetched from base_url + their `file` path (the canonical raw-file URL pattern).
    base_url: Annotated[str, Field(pattern=r"^(https?|file)://\S+/$")] | None = None
    files: dict[str, FileSpec]

    @model_validator(mode="before")
    @classmethod
    def _urls_from_base(cls, data):
        if isinstance(data, dict) and data.get("base_url") and isinstance(data.get("files"), dict):
            data = {**data, "files": {role: ({**f, "urls": [data["base_url"] + f.get("file", "")]} if isinstance(f, dict) and "urls" not in f else f)
                                      for role, f in data["files"].items()}}
        return data

    @model_validator(mode="after")
    def _roles(self) -> "DatasetSpec":
        if self.format not in USER_DATA_ENV:
            if self.user_dir_env is not None:
                raise ValueError(f"user_dir_env: only for formats {' and '.join(USER_DATA_ENV)}, whose files come from your own folder")
            unset = next(((role, key) for role, f in self.files.items() for key in ("sha256", "urls") if getattr(f, key) is None), None)
            if unset is not None:
                raise ValueError(f"files.{unset[0]}.{unset[1]}: required for format '{self.format}'")
        if self.format in SERIES_FORMATS:
            return self._series_roles()
        needed = {
            "idx": {"train_images", "train_labels", "test_images", "test_labels"},
            "png_folder": {"archive"},
            "rgbd_npy": {"train_normal", "test_normal", "test_anomalous"},
            "rgbd_png": {"archive"},
            "kdd99": {"train", "test"},
        }[self.format]
        if set(self.files) != needed:
            raise ValueError(f"format '{self.format}' needs exactly the files {sorted(needed)}, got {sorted(self.files)}")
        if (self.format == "rgbd_png") != (self.depth_range is not None):
            raise ValueError("depth_range: required for format rgbd_png (and only there), e.g. [300, 5000]")
        if self.depth_range is not None and not self.depth_range[0] < self.depth_range[1]:
            raise ValueError(f"depth_range: needs min < max, got {list(self.depth_range)}")
        return self

    def _series_roles(self) -> "DatasetSpec":
        """skab: any number of experiment files (.csv); smd: train/, test/, test_label/ and interpretation_label/ of each machine;
        swat, wadi: normal and attack (.csv), never downloaded."""
        if self.depth_range is not None:
            raise ValueError("depth_range: only for format rgbd_png")
        if self.format in USER_DATA_ENV:
            if set(self.files) != {"normal", "attack"}:
                raise ValueError(f"format '{self.format}' needs exactly the files ['attack', 'normal'], got {sorted(self.files)}")
            bad = [f.file for f in self.files.values() if not f.file.endswith(".csv")]
            if bad:
                raise ValueError(f"format '{self.format}': its files are the official .csv exports, got {bad[0]}")
            if self.mirror_dir is not None or any(f.urls is not None for f in self.files.values()):
                raise ValueError(f"format '{self.format}': its files are copied from the folder in ${self.user_dir_variable()}, "
                                 "never downloaded; remove urls, base_url and mirror_dir")
            return self
        if self.format == "skab":
            bad = [f.file for f in self.files.values() if not f.file.endswith(".csv")]
            if bad or not self.files:
                raise ValueError(f"format 'skab' needs one or more .csv files{f', got {bad[0]}' if bad else ''}")
            return self
        parts = {}
        for role, f in self.files.items():
            part, _, machine = f.file.removesuffix(".txt").partition("/")
            if part not in SMD_PARTS or not machine or "/" in machine or not f.file.endswith(".txt"):
                raise ValueError(f"files.{role}: smd files are <part>/<machine>.txt with part one of {', '.join(SMD_PARTS)} (got {f.file})")
            parts.setdefault(machine, set()).add(part)
        incomplete = {m: sorted(set(SMD_PARTS) - p) for m, p in parts.items() if p != set(SMD_PARTS)}
        if incomplete:
            machine, missing = next(iter(incomplete.items()))
            raise ValueError(f"format 'smd': machine {machine} lacks {', '.join(missing)}")
        return self

    def user_dir_variable(self) -> str:
        """swat, wadi: the environment variable naming the folder that holds the user's copy of the files."""
        return self.user_dir_env or USER_DATA_ENV[self.format]

    def smd_machines(self) -> list[str]:
        """The machines an smd dataset declares, in declaration order."""
        return list(dict.fromkeys(f.file.removesuffix(".txt").partition("/")[2] for f in self.files.values()))


class GenerateParams(Strict):
    """The generated RGB-D set: boxes (normal) vs spheres (anomalous), ray-cast with depth."""

    kind: Literal["boxes_vs_spheres"] = "boxes_vs_spheres"
    size: Annotated[int, Field(ge=8, le=256, multiple_of=4)] = 32
    n_train: Annotated[int, Field(ge=2, le=1_000_000)] = 3000
    n_test_normal: Annotated[int, Field(ge=1, le=1_000_000)] = 500
    n_test_anomalous: Annotated[int, Field(ge=1, le=1_000_000)] = 500
    seed: int = 0


# --- prepare ---------------------------------------------------------------------------------
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
