"""Download stage: fetch a declared dataset's files, verify sha256, write atomically.

With GADFLOW_DATA_MIRROR set to a folder laid out like ../shared/datasets
(``<mirror>/<dataset>/<file>``), files are copied from there instead of the network. A mirror may
store a file gzip'd as ``<file>.gz`` (SMD's mirror does); it is decompressed on the way, and the
declared sha256 is always that of the file itself, as the canonical URL serves it.

SWaT and WADI (formats swat, wadi) are given out only on request by their owners, so they are never
downloaded: their files are copied from the folder named by the dataset's variable (GADFLOW_SWAT_DIR /
GADFLOW_WADI_DIR, or its ``user_dir_env``), and checked against their sha256 when one is declared.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, BinaryIO, Literal

from pydantic import Field, model_validator
from tqdm.auto import tqdm

from models.errors import GadflowError
from models.storage import atomic_open, staged_dir

from ..settings import Strict

log = logging.getLogger(__name__)

MIRROR_ENV = "GADFLOW_DATA_MIRROR"
CHUNK = 1 << 20
ITRUST_DATASETS = "https://itrust.sutd.edu.sg/itrust-labs_datasets/"
TABULAR_FORMATS = ("kdd99",)  # dataset formats whose samples are feature rows, not images
SERIES_FORMATS = ("skab", "smd", "swat", "wadi")  # dataset formats of multivariate time series (samples are windows)
# Formats whose data its owners give out only on request: copied from the user's folder named by an environment variable.
USER_DATA_ENV = {"swat": "GADFLOW_SWAT_DIR", "wadi": "GADFLOW_WADI_DIR"}
SMD_PARTS = ("train", "test", "test_label", "interpretation_label")


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



class ChecksumError(GadflowError):
    """A fetched file does not hash to its declared sha256."""


def sha256_of(path: Path) -> str:
    with open(path, "rb") as fh:
        return _sha256_stream(fh)


def _sha256_stream(fh: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := fh.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _copy_stream(src, dst, total: int | None, label: str) -> None:
    with tqdm(total=total, unit="B", unit_scale=True, desc=label, leave=False, disable=None) as bar:
        while chunk := src.read(CHUNK):
            dst.write(chunk)
            bar.update(len(chunk))


def _fetch_to(dst: BinaryIO, spec: FileSpec, mirror: Path | None, retries: int, backoff_s: float) -> str:
    """Write the file's bytes to ``dst`` (from its start: a failed attempt's bytes are dropped); return where they came from."""
    if mirror is not None:
        source = mirror / spec.file
        gzipped = source.with_name(source.name + ".gz")
        if source.is_file():
            with open(source, "rb") as src:
                _copy_stream(src, dst, source.stat().st_size, spec.file)
        elif gzipped.is_file():
            with gzip.open(gzipped, "rb") as src:
                _copy_stream(src, dst, None, spec.file)
            source = gzipped
        else:
            raise GadflowError(f"{spec.file}: not found in the mirror at {source} (nor {gzipped.name}) ({MIRROR_ENV}={mirror.parent})")
        return str(source)
    last_error = {}  # url -> its last failure
    for url in spec.urls:
        for attempt in range(retries + 1):
            try:
                dst.seek(0)
                dst.truncate()
                with urllib.request.urlopen(url, timeout=60) as response:
                    length = response.headers.get("Content-Length")
                    _copy_stream(response, dst, int(length) if length else None, spec.file)
                return url
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                last_error[url] = f"{url}: {getattr(exc, 'reason', exc)}"
                if attempt < retries:
                    delay = backoff_s * 2**attempt
                    log.warning("%s: attempt %d failed (%s); retrying in %.0fs", url, attempt + 1, exc, delay)
                    time.sleep(delay)
    raise GadflowError(f"{spec.file}: could not download from any URL ({'; '.join(last_error.values())})")


def fetch_file(spec: FileSpec, out_dir: Path, mirror: Path | None = None, retries: int = 3, backoff_s: float = 2.0) -> Path:
    """Fetch one file into ``out_dir`` and verify it; a mismatch leaves nothing behind."""
    target = out_dir / spec.file
    with atomic_open(target) as fh:  # renamed into place only if the checksum holds
        source = _fetch_to(fh, spec, mirror, retries, backoff_s)
        fh.seek(0)
        actual = _sha256_stream(fh)
        if spec.sha256 is not None and actual != spec.sha256:
            raise ChecksumError(f"{spec.file}: sha256 mismatch (expected {spec.sha256[:12]}…, got {actual[:12]}…) from {source}; nothing was written")
    log.info("%s: fetched from %s, %s", target, source, "checksum ok" if spec.sha256 else f"sha256 {actual} (none declared; declare it to pin this copy)")
    return target


def mirror_for(name: str, spec: DatasetSpec) -> Path | None:
    root = os.environ.get(MIRROR_ENV)
    if not root:
        return None
    if not Path(root).is_dir():
        raise GadflowError(f"{MIRROR_ENV}={root}: not a folder")
    return Path(root) / (spec.mirror_dir or name)


def user_data_dir(spec: DatasetSpec) -> Path:
    """swat, wadi: the folder named by the dataset's variable, holding every declared file; else one line saying what to do."""
    variable = spec.user_dir_variable()
    files = [f.file for f in spec.files.values()]
    dataset = {"swat": "SWaT", "wadi": "WADI"}[spec.format]
    how = (f"{dataset} is given out only on request by its owners: request it from iTrust, Singapore University of Technology and Design "
           f"({ITRUST_DATASETS}), then set {variable} to the folder holding {' and '.join(files)}")
    root = os.environ.get(variable)
    if not root:
        raise GadflowError(f"{variable} is not set. {how}")
    if not Path(root).is_dir():
        raise GadflowError(f"{variable}={root}: not a folder. {how}")
    missing = [f for f in files if not (Path(root) / f).is_file()]
    if missing:
        raise GadflowError(f"{variable}={root}: {missing[0]} is not there. {how}")
    return Path(root)


def _already_verified(spec: DatasetSpec, out_dir: Path) -> bool:
    """True when ``out_dir`` holds exactly the declared files, each with its declared sha256."""
    if not out_dir.is_dir():
        return False
    present = {p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file()}
    if present != {f.file for f in spec.files.values()}:
        return False
    return all(f.sha256 is not None and sha256_of(out_dir / f.file) == f.sha256 for f in spec.files.values())  # undeclared: copied again


def download_dataset(name: str, spec: DatasetSpec, out_dir: Path) -> Path:
    """Fetch every declared file of one dataset into ``out_dir`` (all verified, or an error)."""
    user_data = spec.format in USER_DATA_ENV
    mirror = None if user_data else mirror_for(name, spec)
    if _already_verified(spec, out_dir):
        log.info("%s: all %d files present in %s, checksums ok", name, len(spec.files), out_dir)
        return out_dir
    if user_data:  # the user's folder stands in for the mirror, and nothing is downloaded
        mirror = user_data_dir(spec)
    # Verified files land in a staging folder first, so a failure on the 3rd file leaves no half dataset.
    with staged_dir(out_dir) as staging:
        for spec_file in tqdm(list(spec.files.values()), desc=f"download {name}", unit="file", disable=None):
            fetch_file(spec_file, staging, mirror)
    return out_dir
