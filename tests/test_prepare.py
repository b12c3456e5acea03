"""The one-class split and the prepare stage on tiny hand-written IDX / PNG datasets."""

from __future__ import annotations

import gzip
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from models.errors import GadflowError
from tasks.adapters import load_prepared
from tasks.adapters.base import SCHEMA
from tasks.adapters.image import SPLIT_FILES, VALIDATION_FILE, ImageSource, one_class_split
from tasks.sources.download import DatasetSpec, FileSpec
from tasks.steps.prepare import PrepareParams, prepare_dataset
from tests.helpers.data import FAKE_SHA, IDX_FILES, idx_bytes, idx_spec


def unique_images(n: int, size: int = 4) -> np.ndarray:
    """uint8 (n, 1, size, size); image i carries i in its first two pixels, so every image is distinct."""
    images = np.random.default_rng(123).integers(0, 256, size=(n, 1, size, size), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(n) % 256
    images[:, 0, 0, 1] = np.arange(n) // 256
    return images


def image_ids(images: np.ndarray) -> np.ndarray:
    return images[:, 0, 0, 0].astype(int) + 256 * images[:, 0, 0, 1].astype(int)


# --- one_class_split --------------------------------------------------------------------------------
@pytest.fixture
def toy():
    rng = np.random.default_rng(7)
    train_classes = rng.integers(0, 5, size=300)
    test_classes = rng.integers(0, 5, size=80)
    return ImageSource(unique_images(300), train_classes, unique_images(80), test_classes)


@pytest.mark.parametrize("normal, fraction", [([0], 0.1), ([1, 3], 0.25), ([4], 0.37)])
def test_split_sizes_and_disjointness(toy, normal, fraction):
    train_images, train_classes, test_images, test_classes = toy
    out = one_class_split(toy, normal, fraction, seed=0)
    normal_ids = set(np.flatnonzero(np.isin(train_classes, normal)).tolist())
    n_calib = int(round(fraction * len(normal_ids)))
    assert len(out["calib"]) == n_calib
    assert len(out["train"]) == len(normal_ids) - n_calib
    train_ids, calib_ids = set(image_ids(out["train"]).tolist()), set(image_ids(out["calib"]).tolist())
    assert train_ids.isdisjoint(calib_ids)
    assert train_ids | calib_ids == normal_ids
    assert out["train"].shape[1:] == out["calib"].shape[1:] == train_images.shape[1:]


def test_split_is_seeded(toy):
    args = (toy, [0, 1], 0.2)
    a, b, c = (one_class_split(*args, seed=s) for s in (5, 5, 6))
    np.testing.assert_array_equal(a["calib"], b["calib"])
    np.testing.assert_array_equal(a["train"], b["train"])
    assert set(image_ids(a["calib"]).tolist()) != set(image_ids(c["calib"]).tolist())


def test_test_labels_mark_every_non_normal_class(toy):
    out = one_class_split(toy, [2, 4], 0.1, seed=0)
    test_classes = toy.test_classes
    assert out["test_labels"].dtype == np.int8
    np.testing.assert_array_equal(out["test_labels"], np.where(np.isin(test_classes, [2, 4]), 0, 1))
    np.testing.assert_array_equal(out["test_classes"], test_classes)
    np.testing.assert_array_equal(out["test"], toy.test)


def test_empty_normal_class_is_refused(toy):
    with pytest.raises(GadflowError, match=r"normal_classes \[9\]"):
        one_class_split(toy, [9], 0.1, seed=0)


@pytest.mark.parametrize("fraction", [0.001, 0.9999])
def test_fraction_leaving_an_empty_split_is_refused(toy, fraction):
    with pytest.raises(GadflowError, match="empty split"):
        one_class_split(toy, [0], fraction, seed=0)


# --- prepare_dataset on a tiny IDX dataset ---------------------------------------------------------
def test_prepare_idx_round_trip(tmp_path, tiny_idx):
    raw, data = tiny_idx
    params = PrepareParams(source="tiny", normal_classes=[0, 2], calibration_fraction=0.2, seed=3)
    out = tmp_path / "prepared" / "tiny"
    assert prepare_dataset("tiny", params, idx_spec(), raw, out) == out

    prepared = load_prepared(out)
    assert (prepared.input_spec.shape[0], prepared.input_spec.shape[1]) == (1, 8)  # channels, size
    assert prepared.kind == prepared.input_spec.kind == "image" and prepared.input_spec.shape == (1, 8, 8)
    assert prepared.schema["shape"] == [1, 8, 8]
    assert prepared.schema["counts"] == {"train": 24, "calib": 6, "test": 24, "test_anomalous": 12, "val_anomalies": 6}
    assert prepared.schema["normal_classes"] == [0, 2]
    assert prepared.schema["source_sha256"] == {role: FAKE_SHA for role in IDX_FILES}
    assert json.loads((out / SCHEMA).read_text()) == prepared.schema
    assert sorted(p.name for p in out.iterdir()) == sorted([SCHEMA, *SPLIT_FILES.values(), VALIDATION_FILE])

    for key in SPLIT_FILES:
        arr = getattr(prepared, key)
        assert isinstance(arr, np.memmap), key
        assert not arr.flags.writeable, key
    assert prepared.train.dtype == prepared.calib.dtype == prepared.test.dtype == np.uint8
    assert prepared.train.shape == (24, 1, 8, 8) and prepared.calib.shape == (6, 1, 8, 8)

    expected = one_class_split(
        ImageSource(data["train_images"][:, None], data["train_labels"], data["test_images"][:, None], data["test_labels"]), [0, 2], 0.2, 3
    )
    for key in SPLIT_FILES:
        np.testing.assert_array_equal(np.asarray(getattr(prepared, key)), expected[key])
    np.testing.assert_array_equal(prepared.test_labels, np.isin(data["test_labels"], [0, 2]) == 0)
    # validation anomalies: training images of the other classes (never test images), as many as the calibration split
    np.testing.assert_array_equal(np.asarray(prepared.val_anomalies), expected["val_anomalies"])
    other = data["train_images"][~np.isin(data["train_labels"], [0, 2])]
    assert len(prepared.val_anomalies) == 6
    assert all((other == image[0]).all(axis=(1, 2)).any() for image in np.asarray(prepared.val_anomalies))
    # nothing but the output folder is left next to it (no staging folders)
    assert [p.name for p in out.parent.iterdir()] == ["tiny"]


def test_prepare_replaces_previous_output(tmp_path, tiny_idx):
    raw, _ = tiny_idx
    out = tmp_path / "prepared" / "tiny"
    out.mkdir(parents=True)
    (out / "stale.txt").write_text("old run")
    prepare_dataset("tiny", PrepareParams(source="tiny"), idx_spec(), raw, out)
    assert not (out / "stale.txt").exists()
    assert load_prepared(out).schema["counts"]["calib"] == 2  # round(0.1 * 15)


def test_prepare_missing_raw_file(tmp_path, tiny_idx):
    raw, _ = tiny_idx
    (raw / IDX_FILES["test_labels"]).unlink()
    out = tmp_path / "prepared" / "tiny"
    with pytest.raises(GadflowError, match=IDX_FILES["test_labels"]):
        prepare_dataset("tiny", PrepareParams(source="tiny"), idx_spec(), raw, out)
    assert not out.exists()


def test_prepare_label_count_mismatch(tmp_path, tiny_idx):
    raw, data = tiny_idx
    (raw / IDX_FILES["train_labels"]).write_bytes(idx_bytes(data["train_labels"][:-1], 0x00000801))
    with pytest.raises(GadflowError, match="59 labels for 60 images"):
        prepare_dataset("tiny", PrepareParams(source="tiny"), idx_spec(), raw, tmp_path / "out")


def test_prepare_non_square_images_refused(tmp_path, tiny_idx):
    raw, data = tiny_idx
    for role in ("train_images", "test_images"):
        arr = np.zeros((len(data[role]), 8, 6), np.uint8)
        payload = idx_bytes(arr, 0x00000803)
        (raw / IDX_FILES[role]).write_bytes(gzip.compress(payload) if IDX_FILES[role].endswith(".gz") else payload)
    with pytest.raises(GadflowError, match="square"):
        prepare_dataset("tiny", PrepareParams(source="tiny"), idx_spec(), raw, tmp_path / "out")


def test_load_prepared_incomplete_folder(tmp_path, tiny_idx):
    raw, _ = tiny_idx
    out = tmp_path / "prepared" / "tiny"
    prepare_dataset("tiny", PrepareParams(source="tiny"), idx_spec(), raw, out)
    (out / SPLIT_FILES["calib"]).unlink()
    with pytest.raises(GadflowError, match="calib.npy"):
        load_prepared(out)


# --- prepare_dataset on a PNG-folder archive ---------------------------------------------------------
def test_prepare_png_folder(tmp_path):
    src = tmp_path / "src" / "shapes"
    rng = np.random.default_rng(2)
    for split, n in (("train/normal", 10), ("test/normal", 3), ("test/anomalous", 4)):
        (src / split).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)).save(src / split / f"{i}.png")
    raw = tmp_path / "raw" / "shapes"
    raw.mkdir(parents=True)
    with tarfile.open(raw / "shapes.tar.gz", "w:gz") as tf:
        tf.add(src, arcname="shapes")
    spec = DatasetSpec(format="png_folder", files={"archive": FileSpec(file="shapes.tar.gz", sha256=FAKE_SHA, urls=["file:///x"])})

    out = tmp_path / "prepared" / "shapes"
    prepare_dataset("shapes", PrepareParams(source="shapes", calibration_fraction=0.2), spec, raw, out)
    prepared = load_prepared(out)
    assert prepared.schema["counts"] == {"train": 8, "calib": 2, "test": 7, "test_anomalous": 4, "val_anomalies": 0}
    assert prepared.val_anomalies is None and not (out / VALIDATION_FILE).exists()  # normal-only training folder
    assert prepared.test.shape == (7, 3, 8, 8)
    assert prepared.test_labels.tolist() == [0, 0, 0, 1, 1, 1, 1]

    with pytest.raises(GadflowError, match="normal_classes"):
        prepare_dataset("shapes", PrepareParams(source="shapes", normal_classes=[1]), spec, raw, tmp_path / "other")
