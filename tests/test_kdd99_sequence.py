"""KDD Cup 99 read as a sequence (MAD-GAN's setup): record order kept, continuous features, log1p in the transform."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from models.errors import GadflowError
from models.series_transform import SeriesTransform
from tasks.adapters import load_prepared
from tasks.adapters.series_store import read_split
from tasks.params import load_params, merged_params
from tasks.settings import ParamsError
from tasks.sources.kdd99 import KDD99_CONTINUOUS
from tasks.steps.prepare import KDD99Protocol, PrepareParams, prepare_dataset
from tests.helpers.data import KDD_TEST_FILE, KDD_TRAIN_FILE, corrected_records, kdd_spec, train_records, write_kdd

REPO = Path(__file__).resolve().parents[1]


def sequence_params(**protocol) -> PrepareParams:
    return PrepareParams(source="kdd99", calibration_fraction=0.2, kdd99=KDD99Protocol(**protocol), series={"seq_len": 5, "stride": 2})


@pytest.fixture
def raw(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    write_kdd(folder / KDD_TRAIN_FILE, train_records(200))
    write_kdd(folder / KDD_TEST_FILE, corrected_records(60))
    return folder


def test_split_keeps_record_order_and_trains_on_inliers_before_the_test_series(raw, tmp_path):
    data = load_prepared(prepare_dataset("kdd99-seq", sequence_params(test_fraction=0.25), kdd_spec(), raw, tmp_path / "out"))
    assert data.kind == "series" and data.schema["format"] == "kdd99"
    assert data.input_spec.shape == (5, len(KDD99_CONTINUOUS)) and len(KDD99_CONTINUOUS) == 34
    transform = SeriesTransform.load(tmp_path / "out" / "series_transform.json")
    assert transform.log1p
    train, calib, test = (read_split(tmp_path / "out" / f"{k}.arrow")["kdd99"] for k in ("train", "calib", "test"))
    # records 0..149 precede the test series; every 5th record (i % 5 == 0) is `normal.`, the anomaly class
    inlier_ids = [i for i in range(150) if i % 5 != 0]
    assert len(train.values) + len(calib.values) == len(inlier_ids)
    assert data.schema["anomaly_class_records_removed_from_training"] == 30
    # src_bytes = record id: undo the transform's scaling of that channel to read the ids back, in order
    col = KDD99_CONTINUOUS.index("src_bytes")
    ids = np.expm1(np.concatenate([train.values, calib.values])[:, col] * transform.scale[col] + transform.offset[col])
    np.testing.assert_allclose(ids, inlier_ids, atol=1e-2)
    test_ids = np.expm1(test.values[:, col] * transform.scale[col] + transform.offset[col])
    np.testing.assert_allclose(test_ids, np.arange(150, 200), atol=0.05)
    np.testing.assert_array_equal(test.labels, (np.arange(150, 200) % 5 == 0).astype(np.int8))


def test_corrected_file_is_the_test_series(raw, tmp_path):
    data = load_prepared(prepare_dataset("kdd99-seq", sequence_params(test_file="corrected"), kdd_spec(), raw, tmp_path / "out"))
    assert data.schema["counts"]["test_points"] == 60
    assert data.schema["counts"]["train_points"] + data.schema["counts"]["calib_points"] == 160


def test_transform_fitted_on_training_inliers_only(raw, tmp_path):
    """Changing the test records leaves the fitted transform as it was."""
    prepare_dataset("kdd99-seq", sequence_params(test_file="corrected"), kdd_spec(), raw, tmp_path / "a")
    write_kdd(raw / KDD_TEST_FILE, corrected_records(60, start=10**6))
    prepare_dataset("kdd99-seq", sequence_params(test_file="corrected"), kdd_spec(), raw, tmp_path / "b")
    a, b = (SeriesTransform.load(tmp_path / k / "series_transform.json") for k in ("a", "b"))
    np.testing.assert_array_equal(a.offset, b.offset)
    np.testing.assert_array_equal(a.scale, b.scale)


def test_too_short_test_series_is_refused(raw, tmp_path):
    with pytest.raises(GadflowError, match="shorter than one window"):
        prepare_dataset("kdd99-seq", sequence_params(test_fraction=0.01), kdd_spec(), raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_log1p_transform_refuses_values_at_or_below_minus_one():
    transform = SeriesTransform("minmax", log1p=True).fit(np.array([[0.0, 1.0], [3.0, 2.0]]))
    np.testing.assert_allclose(transform.transform(np.array([[np.expm1(1.0), 1.0]])), [[1.0 / np.log(4.0), 0.0]], rtol=1e-6)
    with pytest.raises(GadflowError, match="log1p needs x > −1"):
        transform.transform(np.array([[-1.0, 1.0]]))
    assert SeriesTransform.from_dict(transform.to_dict()).log1p


def test_params_accept_series_on_kdd99_and_route_the_model(tmp_path):
    params = merged_params(REPO / "params.yaml")
    params["prepare"]["kdd99-seq"] = {"source": "kdd99", "kdd99": {"anomaly_labels": ["normal."]}, "series": {"seq_len": 30, "stride": 10}}
    params["experiments"]["kdd99-seq-egbad"] = {"data": "kdd99-seq", "model": {"kind": "egbad"}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match="experiments.kdd99-seq-egbad.model.kind: 'egbad' takes image or tabular inputs, but 'kdd99-seq' is series data"):
        load_params(path)
    params["experiments"]["kdd99-seq-egbad"]["model"] = {"kind": "madgan", "search": {"lr_theta": 0.0}}  # a window model takes it
    path.write_text(yaml.safe_dump(params))
    assert load_params(path).data_kind("kdd99-seq") == "series"
