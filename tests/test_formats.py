"""Raw-format readers: IDX (real MNIST mirror files and hand-made bad files), PNG-folder archives, safe extraction."""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.errors import GadflowError
from tasks.sources.archives import folder_splits, safe_extract
from tasks.sources.idx import idx_images, idx_labels, read_idx
from tasks.sources.png_folder import read_png_folder

MNIST = Path("/work/shared/datasets/mnist")
TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def idx_bytes(arr: np.ndarray, dims: tuple[int, ...] | None = None, dtype_code: int = 0x08) -> bytes:
    """Valid IDX bytes for a uint8 array (``dims`` overrides the declared shape)."""
    dims = arr.shape if dims is None else dims
    header = bytes([0, 0, dtype_code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    return header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


# --- real MNIST mirror files ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist_train_images() -> np.ndarray:
    return read_idx(MNIST / "train-images-idx3-ubyte.gz")


def test_real_mnist_train_images(mnist_train_images):
    arr = mnist_train_images
    assert arr.shape == (60000, 28, 28)
    assert arr.dtype == np.uint8
    assert int(arr.sum(dtype=np.int64)) == 1567298545
    assert (int(arr.min()), int(arr.max())) == (0, 255)


def test_real_mnist_test_images_as_nchw():
    images = idx_images(MNIST / "t10k-images-idx3-ubyte.gz")
    assert images.shape == (10000, 1, 28, 28)
    assert images.dtype == np.uint8
    assert int(images.sum(dtype=np.int64)) == 264923200


def test_real_mnist_labels():
    train = idx_labels(MNIST / "train-labels-idx1-ubyte.gz", 60000)
    test = idx_labels(MNIST / "t10k-labels-idx1-ubyte.gz", 10000)
    assert train.shape == (60000,) and test.shape == (10000,)
    assert np.bincount(train, minlength=10).tolist() == TRAIN_LABEL_COUNTS
    assert np.bincount(test, minlength=10).tolist() == TEST_LABEL_COUNTS


def test_label_count_must_match_images():
    with pytest.raises(GadflowError, match=r"10000 labels for 9999 images"):
        idx_labels(MNIST / "t10k-labels-idx1-ubyte.gz", 9999)


# --- hand-made IDX files --------------------------------------------------------------------------
def test_plain_and_gzipped_idx_read_the_same(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "plain").write_bytes(idx_bytes(arr))
    (tmp_path / "packed.gz").write_bytes(gzip.compress(idx_bytes(arr)))
    np.testing.assert_array_equal(read_idx(tmp_path / "plain"), arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "packed.gz"), arr)


def test_four_dimensional_idx_images_become_nchw(tmp_path):
    nhwc = np.random.default_rng(0).integers(0, 256, size=(5, 4, 6, 3), dtype=np.uint8)
    (tmp_path / "rgb").write_bytes(idx_bytes(nhwc))
    out = idx_images(tmp_path / "rgb")
    assert out.shape == (5, 3, 4, 6)
    np.testing.assert_array_equal(out, nhwc.transpose(0, 3, 1, 2))


def test_wrong_magic_names_the_file(tmp_path):
    bad = tmp_path / "bad-magic-idx3-ubyte"
    bad.write_bytes(b"\x12\x34\x08\x03" + b"\x00" * 20)
    with pytest.raises(GadflowError, match="bad-magic-idx3-ubyte") as info:
        read_idx(bad)
    assert "not an IDX file" in str(info.value)


def test_unsupported_idx_dtype_names_the_file(tmp_path):
    bad = tmp_path / "floats-idx1"
    bad.write_bytes(idx_bytes(np.zeros(4, np.uint8), dtype_code=0x0D))
    with pytest.raises(GadflowError, match="floats-idx1.*0x0d"):
        read_idx(bad)


def test_header_declaring_more_data_than_file_holds(tmp_path):
    bad = tmp_path / "short-idx3-ubyte"
    bad.write_bytes(idx_bytes(np.zeros(100, np.uint8), dims=(10, 28, 28)))
    with pytest.raises(GadflowError, match="short-idx3-ubyte") as info:
        read_idx(bad)
    assert "7840" in str(info.value) and "100" in str(info.value)


def test_trailing_bytes_beyond_header_shape_are_refused(tmp_path):
    bad = tmp_path / "long-idx1-ubyte"
    bad.write_bytes(idx_bytes(np.zeros(12, np.uint8), dims=(10,)))
    with pytest.raises(GadflowError, match="long-idx1-ubyte"):
        read_idx(bad)


def test_header_truncated_inside_the_dimensions(tmp_path):
    bad = tmp_path / "cut-header"
    bad.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">I", 10))  # 3 dims declared, 1 present
    with pytest.raises(GadflowError, match="cut-header.*3 dimensions"):
        read_idx(bad)


def test_truncated_gzip_names_the_file(tmp_path):
    packed = gzip.compress(idx_bytes(np.zeros((3, 8, 8), np.uint8)))
    bad = tmp_path / "truncated.gz"
    bad.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(GadflowError, match="truncated.gz"):
        read_idx(bad)


def test_labels_of_wrong_rank_are_refused(tmp_path):
    bad = tmp_path / "labels-2d"
    bad.write_bytes(idx_bytes(np.zeros((2, 3), np.uint8)))
    with pytest.raises(GadflowError, match="labels-2d"):
        idx_labels(bad, 2)


# --- PNG folders -------------------------------------------------------------------------------------
def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_png_tree(root: Path, size=(8, 8), counts=(3, 2, 2), mode: str = "L") -> dict[str, list[np.ndarray]]:
    """root/train/normal, root/test/normal, root/test/anomalous with distinct images; returns them in name order."""
    rng = np.random.default_rng(1)
    shape = size if mode == "L" else (*size, 3)
    written: dict[str, list[np.ndarray]] = {}
    for split, n in zip(("train/normal", "test/normal", "test/anomalous"), counts):
        written[split] = []
        for i in range(n):
            arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
            write_png(root / split / f"img_{i:02d}.png", arr)
            written[split].append(arr)
    return written


def png_folder_splits(archive: Path) -> dict[str, np.ndarray]:
    """The png_folder format's split folders: ``folder_splits`` with the PNG folder reader."""
    return folder_splits(archive, read_png_folder)


def make_tar_gz(src: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src, arcname=src.name)
    return archive


def test_png_folder_splits_grayscale(tmp_path):
    written = make_png_tree(tmp_path / "src" / "toy")
    splits = png_folder_splits(make_tar_gz(tmp_path / "src" / "toy", tmp_path / "toy.tar.gz"))
    assert set(splits) == {"train/normal", "test/normal", "test/anomalous"}
    for key, images in written.items():
        assert splits[key].dtype == np.uint8
        assert splits[key].shape == (len(images), 1, 8, 8)
        np.testing.assert_array_equal(splits[key][:, 0], np.stack(images))


def test_png_folder_splits_rgb_channels_first(tmp_path):
    written = make_png_tree(tmp_path / "src" / "rgb", size=(4, 6), counts=(2, 1, 1), mode="RGB")
    splits = png_folder_splits(make_tar_gz(tmp_path / "src" / "rgb", tmp_path / "rgb.tar.gz"))
    assert splits["train/normal"].shape == (2, 3, 4, 6)
    np.testing.assert_array_equal(splits["train/normal"], np.stack(written["train/normal"]).transpose(0, 3, 1, 2))


def test_png_size_mismatch_names_the_file(tmp_path):
    root = tmp_path / "src" / "mixed"
    make_png_tree(root)
    write_png(root / "train" / "normal" / "odd_one.png", np.zeros((9, 9), np.uint8))
    with pytest.raises(GadflowError, match="odd_one.png") as info:
        png_folder_splits(make_tar_gz(root, tmp_path / "mixed.tar.gz"))
    assert "differs" in str(info.value)


def test_png_splits_of_different_sizes_are_refused(tmp_path):
    root = tmp_path / "src" / "split-sizes"
    make_png_tree(root)
    for f in (root / "test" / "anomalous").glob("*.png"):
        write_png(f, np.zeros((10, 10), np.uint8))
    with pytest.raises(GadflowError, match="splits differ"):
        png_folder_splits(make_tar_gz(root, tmp_path / "split-sizes.tar.gz"))


def test_png_archive_without_required_folders(tmp_path):
    root = tmp_path / "src" / "no-train"
    write_png(root / "test" / "normal" / "a.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(GadflowError, match="train/normal"):
        png_folder_splits(make_tar_gz(root, tmp_path / "no-train.tar.gz"))


def test_png_folder_unsupported_mode_names_the_file(tmp_path):
    Image.new("P", (4, 4)).save(tmp_path / "palette.png")
    with pytest.raises(GadflowError, match="palette.png"):
        read_png_folder(tmp_path)


def test_empty_png_folder(tmp_path):
    with pytest.raises(GadflowError, match="no .png images"):
        read_png_folder(tmp_path)


# --- safe extraction ---------------------------------------------------------------------------------
def add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_safe_extract_refuses_tar_path_traversal(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        add_bytes(tf, "fine/ok.txt", b"ok")
        add_bytes(tf, "../escaped.txt", b"gotcha")
    before = files_under(tmp_path)
    target = tmp_path / "deep" / "target"
    target.mkdir(parents=True)
    with pytest.raises(GadflowError, match="evil.tar.gz"):
        safe_extract(archive, target)
    outside = files_under(tmp_path) - before - files_under(target)
    assert outside == set()
    assert not (tmp_path / "deep" / "escaped.txt").exists()


def test_safe_extract_keeps_tar_absolute_path_inside_target(tmp_path):
    archive = tmp_path / "abs.tar"
    victim = tmp_path / "victim.txt"
    with tarfile.open(archive, "w") as tf:
        add_bytes(tf, str(victim), b"gotcha")
    target = tmp_path / "target"
    target.mkdir()
    safe_extract(archive, target)  # the 'data' filter strips the leading '/'
    assert not victim.exists()
    assert (target / str(victim).lstrip("/")).read_bytes() == b"gotcha"


def test_safe_extract_refuses_tar_symlink_out_of_target(tmp_path):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("sneaky")
        info.type = tarfile.SYMTYPE
        info.linkname = "../../outside.txt"
        tf.addfile(info)
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(GadflowError, match="link.tar"):
        safe_extract(archive, target)
    assert not (target / "sneaky").is_symlink()


def test_safe_extract_refuses_zip_path_traversal(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fine/ok.txt", b"ok")
        zf.writestr("../escaped.txt", b"gotcha")
    target = tmp_path / "deep" / "target"
    target.mkdir(parents=True)
    with pytest.raises(GadflowError, match="escaped.txt"):
        safe_extract(archive, target)
    assert files_under(tmp_path / "deep") == set()


def test_safe_extract_plain_tar_and_zip(tmp_path):
    tar_path, zip_path = tmp_path / "good.tar", tmp_path / "good.zip"
    with tarfile.open(tar_path, "w") as tf:
        add_bytes(tf, "a/b.txt", b"tar")
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("a/b.txt", b"zip")
    safe_extract(tar_path, tmp_path / "t")
    safe_extract(zip_path, tmp_path / "z")
    assert (tmp_path / "t" / "a" / "b.txt").read_bytes() == b"tar"
    assert (tmp_path / "z" / "a" / "b.txt").read_bytes() == b"zip"


def test_safe_extract_refuses_non_archive(tmp_path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"this is not an archive")
    with pytest.raises(GadflowError, match="junk.tar.gz"):
        safe_extract(junk, tmp_path / "out")
