"""Download stage: mirror copies, file:// URLs, checksum verification and atomic outputs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from models.errors import GadflowError
from tasks.params import load_params
from tasks.sources.download import MIRROR_ENV, ChecksumError, DatasetSpec, FileSpec, download_dataset, fetch_file, mirror_for
from tasks.sources.idx import idx_labels

REPO = Path(__file__).resolve().parents[1]
MNIST_MIRROR = Path("/work/shared/datasets/mnist")
ROLES = ("train_images", "train_labels", "test_images", "test_labels")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def contents() -> dict[str, bytes]:
    return {role: f"{role} payload ".encode() * (i + 3) for i, role in enumerate(ROLES)}


def make_spec(contents: dict[str, bytes], urls: dict[str, list[str]] | None = None, wrong: str | None = None) -> DatasetSpec:
    """An idx DatasetSpec over ``contents``; ``wrong`` gets a sha256 that does not match its bytes."""
    files = {}
    for role, data in contents.items():
        digest = sha(b"something else") if role == wrong else sha(data)
        files[role] = FileSpec(file=f"{role}.bin", sha256=digest, urls=(urls or {}).get(role, [f"https://example.invalid/{role}.bin"]))
    return DatasetSpec(format="idx", files=files)


@pytest.fixture
def mirror(tmp_path, contents, monkeypatch) -> Path:
    """<mirror>/tiny/<file> for every file, with GADFLOW_DATA_MIRROR pointing at <mirror>."""
    root = tmp_path / "mirror"
    (root / "tiny").mkdir(parents=True)
    for role, data in contents.items():
        (root / "tiny" / f"{role}.bin").write_bytes(data)
    monkeypatch.setenv(MIRROR_ENV, str(root))
    return root


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- mirror -------------------------------------------------------------------------------------------
def test_download_from_mirror(tmp_path, mirror, contents):
    out = tmp_path / "raw" / "tiny"
    assert download_dataset("tiny", make_spec(contents), out) == out
    assert leftovers(out) == sorted(f"{role}.bin" for role in ROLES)
    for role, data in contents.items():
        assert (out / f"{role}.bin").read_bytes() == data
    assert leftovers(out.parent) == ["tiny"]  # no staging folder left


def test_mirror_dir_overrides_dataset_name(tmp_path, mirror, contents):
    spec = make_spec(contents).model_copy(update={"mirror_dir": "tiny"})
    out = tmp_path / "raw" / "renamed"
    download_dataset("renamed", spec, out)
    assert (out / "test_labels.bin").read_bytes() == contents["test_labels"]


def test_checksum_mismatch_leaves_nothing(tmp_path, mirror, contents):
    out = tmp_path / "raw" / "tiny"
    with pytest.raises(ChecksumError, match="test_images.bin") as info:
        download_dataset("tiny", make_spec(contents, wrong="test_images"), out)
    assert "sha256 mismatch" in str(info.value)
    assert not out.exists()
    assert leftovers(out.parent) == []  # no *.part file, no staging folder


def test_checksum_mismatch_keeps_previous_output(tmp_path, mirror, contents):
    out = tmp_path / "raw" / "tiny"
    download_dataset("tiny", make_spec(contents), out)
    with pytest.raises(ChecksumError):
        download_dataset("tiny", make_spec(contents, wrong="train_labels"), out)
    assert leftovers(out.parent) == ["tiny"]
    assert (out / "train_labels.bin").read_bytes() == contents["train_labels"]


def test_missing_file_in_mirror(tmp_path, mirror, contents):
    (mirror / "tiny" / "train_labels.bin").unlink()
    out = tmp_path / "raw" / "tiny"
    with pytest.raises(GadflowError, match="train_labels.bin.*not found in the mirror"):
        download_dataset("tiny", make_spec(contents), out)
    assert not out.exists()
    assert leftovers(out.parent) == []


def test_mirror_env_not_a_folder(tmp_path, contents, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / "no-such-folder"))
    with pytest.raises(GadflowError, match=MIRROR_ENV):
        download_dataset("tiny", make_spec(contents), tmp_path / "raw" / "tiny")


def test_fetch_file_mismatch_leaves_no_part_file(tmp_path, mirror, contents):
    spec = make_spec(contents, wrong="train_images").files["train_images"]
    out = tmp_path / "out"
    with pytest.raises(ChecksumError, match="train_images.bin"):
        fetch_file(spec, out, mirror / "tiny")
    assert leftovers(out) == []


def test_fetch_file_replaces_a_corrupt_existing_file(tmp_path, mirror, contents):
    spec = make_spec(contents).files["test_labels"]
    out = tmp_path / "out"
    out.mkdir()
    (out / spec.file).write_bytes(b"corrupt")
    assert fetch_file(spec, out, mirror / "tiny") == out / spec.file
    assert (out / spec.file).read_bytes() == contents["test_labels"]
    assert leftovers(out) == [spec.file]


# --- URLs (file://), mirror unset ------------------------------------------------------------------------
@pytest.fixture
def served(tmp_path, contents, monkeypatch) -> dict[str, list[str]]:
    """file:// URLs for every file, with the mirror variable unset."""
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    site = tmp_path / "site"
    site.mkdir()
    urls = {}
    for role, data in contents.items():
        (site / f"{role}.bin").write_bytes(data)
        urls[role] = [(site / f"{role}.bin").as_uri()]
    return urls


def test_download_from_file_urls(tmp_path, served, contents):
    out = tmp_path / "raw" / "tiny"
    download_dataset("tiny", make_spec(contents, urls=served), out)
    for role, data in contents.items():
        assert (out / f"{role}.bin").read_bytes() == data


def test_file_url_checksum_mismatch(tmp_path, served, contents):
    out = tmp_path / "raw" / "tiny"
    with pytest.raises(ChecksumError, match="train_labels.bin"):
        download_dataset("tiny", make_spec(contents, urls=served, wrong="train_labels"), out)
    assert not out.exists()
    assert leftovers(out.parent) == []


def test_falls_back_to_the_next_url(tmp_path, served, contents):
    missing = (tmp_path / "site" / "gone.bin").as_uri()
    spec = make_spec(contents, urls={"test_images": [missing, *served["test_images"]]}).files["test_images"]
    path = fetch_file(spec, tmp_path / "out", retries=1, backoff_s=0.0)
    assert path.read_bytes() == contents["test_images"]


def test_all_urls_failing(tmp_path, served, contents):
    gone = [(tmp_path / "site" / f"gone{i}.bin").as_uri() for i in range(2)]
    spec = make_spec(contents, urls={"test_images": gone}).files["test_images"]
    with pytest.raises(GadflowError, match="test_images.bin: could not download") as info:
        fetch_file(spec, tmp_path / "out", retries=0)
    assert "gone0.bin" in str(info.value) and "gone1.bin" in str(info.value)
    assert leftovers(tmp_path / "out") == []


def test_all_urls_failing_with_retries_names_every_url(tmp_path, served, contents):
    """The message keeps one error per URL: with retries, the first URL's failure must still be reported."""
    gone = [(tmp_path / "site" / f"gone{i}.bin").as_uri() for i in range(2)]
    spec = make_spec(contents, urls={"test_images": gone}).files["test_images"]
    with pytest.raises(GadflowError, match="could not download") as info:
        fetch_file(spec, tmp_path / "out", retries=1, backoff_s=0.0)
    assert "gone0.bin" in str(info.value), f"first URL missing from the message: {info.value}"
    assert "gone1.bin" in str(info.value)


# --- the real MNIST mirror, checked against params.yaml ------------------------------------------------
def test_real_mnist_label_files_match_params_sha256(tmp_path, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, str(MNIST_MIRROR.parent))
    dataset = load_params(REPO / "params.yaml").download["mnist"]
    mirror = mirror_for("mnist", dataset)
    assert mirror == MNIST_MIRROR
    out = tmp_path / "raw" / "mnist"
    for role, n in (("train_labels", 60000), ("test_labels", 10000)):
        path = fetch_file(dataset.files[role], out, mirror)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == dataset.files[role].sha256
        assert np.bincount(idx_labels(path, n)).sum() == n
    assert leftovers(out) == ["t10k-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz"]


def test_verified_output_is_not_fetched_again(tmp_path, mirror, contents, monkeypatch):
    out = tmp_path / "raw" / "tiny"
    download_dataset("tiny", make_spec(contents), out)
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / "empty-mirror"))  # a refetch would now fail
    (tmp_path / "empty-mirror").mkdir()
    assert download_dataset("tiny", make_spec(contents), out) == out
    (out / "train_images.bin").write_bytes(b"tampered")  # a bad file forces a refetch, which fails loudly
    with pytest.raises(GadflowError, match="not found in the mirror"):
        download_dataset("tiny", make_spec(contents), out)


# --- sub-folders and gzip'd mirror copies (SKAB, SMD) ---------------------------------------------
def test_files_in_sub_folders_and_a_gzipped_mirror_copy(tmp_path, monkeypatch):
    import gzip

    payloads = {"a": b"first;file\r\n" * 5, "b": b"0.5,0.25\n" * 7}
    spec = DatasetSpec(format="idx", files={
        "train_images": FileSpec(file="valve1/0.csv", sha256=sha(payloads["a"]), urls=["https://example.invalid/valve1/0.csv"]),
        "train_labels": FileSpec(file="train/machine-1-2.txt", sha256=sha(payloads["b"]), urls=["https://example.invalid/m.txt"]),
        "test_images": FileSpec(file="t.bin", sha256=sha(b"t"), urls=["https://example.invalid/t"]),
        "test_labels": FileSpec(file="l.bin", sha256=sha(b"l"), urls=["https://example.invalid/l"]),
    })
    root = tmp_path / "mirror" / "nested"
    (root / "valve1").mkdir(parents=True)
    (root / "train").mkdir()
    (root / "valve1" / "0.csv").write_bytes(payloads["a"])
    (root / "train" / "machine-1-2.txt.gz").write_bytes(gzip.compress(payloads["b"]))  # only the gzip'd copy
    (root / "t.bin").write_bytes(b"t")
    (root / "l.bin").write_bytes(b"l")
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / "mirror"))
    out = tmp_path / "raw" / "nested"
    download_dataset("nested", spec, out)
    assert (out / "valve1" / "0.csv").read_bytes() == payloads["a"]
    assert (out / "train" / "machine-1-2.txt").read_bytes() == payloads["b"]  # stored decompressed, as upstream serves it
    assert not (out / "train" / "machine-1-2.txt.gz").exists()
    # A second run finds every nested file verified and fetches nothing.
    monkeypatch.setattr("tasks.sources.download.fetch_file", lambda *a, **k: pytest.fail("fetched again"))
    download_dataset("nested", spec, out)


@pytest.mark.parametrize("path", ["../escape.csv", "a/../b.csv", "/abs.csv", "a//b.csv", ".hidden"])
def test_file_paths_cannot_leave_the_dataset_folder(path):
    with pytest.raises(Exception, match="file"):
        FileSpec(file=path, sha256="0" * 64, urls=["https://example.invalid/x"])
