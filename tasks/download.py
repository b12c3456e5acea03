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
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE
from tqdm.auto import tqdm

from models.checkpoint import default_mode
from models.errors import GadflowError

from .config import USER_DATA_ENV, DatasetSpec, FileSpec
from .files import staged_dir

log = logging.getLogger(__name__)

MIRROR_ENV = "GADFLOW_DATA_MIRROR"
CHUNK = 1 << 20
ITRUST_DATASETS = "https://itrust.sutd.edu.sg/itrust-labs_datasets/"


class ChecksumError(GadflowError):
    """A fetched file does not hash to its declared sha256."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_stream(src, dst, total: int | None, label: str) -> None:
    with tqdm(total=total, unit="B", unit_scale=True, desc=label, leave=False, disable=None) as bar:
        while chunk := src.read(CHUNK):
            dst.write(chunk)
            bar.update(len(chunk))


def _fetch_to(tmp: Path, spec: FileSpec, mirror: Path | None, retries: int, backoff_s: float) -> str:
    """Write the file's bytes to ``tmp``; return where they came from."""
    if mirror is not None:
        source = mirror / spec.file
        gzipped = source.with_name(source.name + ".gz")
        if source.is_file():
            with open(source, "rb") as src, open(tmp, "wb") as dst:
                _copy_stream(src, dst, source.stat().st_size, spec.file)
        elif gzipped.is_file():
            with gzip.open(gzipped, "rb") as src, open(tmp, "wb") as dst:
                _copy_stream(src, dst, None, spec.file)
            source = gzipped
        else:
            raise GadflowError(f"{spec.file}: not found in the mirror at {source} (nor {gzipped.name}) ({MIRROR_ENV}={mirror.parent})")
        return str(source)
    last_error = {}  # url -> its last failure
    for url in spec.urls:
        for attempt in range(retries + 1):
            try:
                with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as dst:
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
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        source = _fetch_to(tmp, spec, mirror, retries, backoff_s)
        actual = sha256_of(tmp)
        if spec.sha256 is not None and actual != spec.sha256:
            raise ChecksumError(f"{spec.file}: sha256 mismatch (expected {spec.sha256[:12]}…, got {actual[:12]}…) from {source}; nothing was written")
        os.chmod(tmp, default_mode())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
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


@task(cache_policy=NONE, persist_result=False)
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
