"""Prepare stage for time series: chronological splits, a transform fitted on train only, windows on load, config checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.errors import GadflowError
from models.series_transform import SeriesTransform
from tasks.adapters import load_prepared
from tasks.steps.prepare import SeriesParams
from tasks.adapters.series_store import read_split
from tasks.params import load_params
from tasks.sources.download import DatasetSpec
from tasks.sources.skab import SKAB_SENSORS
from tasks.steps.prepare import PrepareParams, prepare_dataset

SHA = "0" * 64  # prepare never re-hashes; the download stage did


def write_smd(root, machine: str, n_train: int, n_test: int, seed: int, shift: float = 0.0) -> None:
    rng = np.random.default_rng(seed)
    for part, n in (("train", n_train), ("test", n_test)):
        (root / part).mkdir(parents=True, exist_ok=True)
        values = rng.uniform(0, 1, size=(n, 38)) + (shift if part == "test" else 0.0)
        np.savetxt(root / part / f"{machine}.txt", values, fmt="%.6f", delimiter=",")
    labels = np.zeros(n_test, dtype=int)
    labels[50:60] = 1
    (root / "test_label").mkdir(exist_ok=True)
    (root / "test_label" / f"{machine}.txt").write_text("\n".join(map(str, labels)) + "\n")
    (root / "interpretation_label").mkdir(exist_ok=True)
    (root / "interpretation_label" / f"{machine}.txt").write_text("50-60:3,7\n")


def smd_spec(machines: list[str]) -> DatasetSpec:
    files = {f"{part}_{m}": {"file": f"{part}/{m}.txt", "sha256": SHA} for m in machines for part in ("train", "test", "test_label", "interpretation_label")}
    return DatasetSpec.model_validate({"format": "smd", "base_url": "https://example.invalid/", "files": files})


def smd_params(**series) -> PrepareParams:
    return PrepareParams(source="smd", calibration_fraction=0.25, series=SeriesParams(seq_len=10, stride=5, **series))


def test_smd_splits_are_chronological_and_windows_come_from_the_stored_series(tmp_path):
    raw = tmp_path / "raw"
    write_smd(raw, "machine-1-1", 200, 120, seed=0)
    write_smd(raw, "machine-1-2", 160, 100, seed=1)
    out = prepare_dataset("smd", smd_params(), smd_spec(["machine-1-1", "machine-1-2"]), raw, tmp_path / "prepared")
    data = load_prepared(out)
    assert data.kind == "series" and data.input_spec.shape == (10, 38)
    train, calib = read_split(out / "train.arrow"), read_split(out / "calib.arrow")
    transform = SeriesTransform.load(out / "series_transform.json")
    original = np.loadtxt(raw / "train" / "machine-1-1.txt", delimiter=",")
    # The last 25 % of each training file is its calibration series, in time order.
    np.testing.assert_allclose(train["machine-1-1"].values, transform.transform(original[:150]), atol=1e-6)
    np.testing.assert_allclose(calib["machine-1-1"].values, transform.transform(original[150:]), atol=1e-6)
    assert len(train["machine-1-2"].values) == 120 and len(calib["machine-1-2"].values) == 40
    # Windows: seq_len 10, stride 5, align_end; the train windows of machine-1-1 are 0, 5, ..., 140 (29 of them).
    assert data.train.shape == (29 + 23, 10, 38) and data.test.shape == (23 + 19, 10, 38)
    np.testing.assert_array_equal(data.train[1], train["machine-1-1"].values[5:15])
    # Window label rule "any": windows overlapping rows 50-59 of each test series.
    assert int(data.test_labels.sum()) == 2 * 3  # starts 45, 50, 55 in each series
    assert list(data.test_classes[:1]) == ["machine-1-1"]
    assert json.loads((out / "interpretation.json").read_text())["machine-1-2"] == [[50, 60, [2, 6]]]


def test_the_transform_is_fitted_on_training_rows_only(tmp_path):
    for shift, folder in ((0.0, "a"), (50.0, "b")):
        write_smd(tmp_path / folder / "raw", "machine-1-1", 200, 120, seed=0, shift=shift)
        prepare_dataset("smd", smd_params(), smd_spec(["machine-1-1"]), tmp_path / folder / "raw", tmp_path / folder / "prepared")
    a, b = (tmp_path / f / "prepared" for f in ("a", "b"))
    assert (a / "series_transform.json").read_text() == (b / "series_transform.json").read_text()
    np.testing.assert_array_equal(read_split(a / "calib.arrow")["machine-1-1"].values, read_split(b / "calib.arrow")["machine-1-1"].values)
    shifted = read_split(b / "test.arrow")["machine-1-1"].values - read_split(a / "test.arrow")["machine-1-1"].values
    assert shifted.min() > 40  # the test rows moved; nothing fitted followed them


def test_pca_keeps_the_requested_components(tmp_path):
    write_smd(tmp_path / "raw", "machine-1-1", 200, 120, seed=0)
    out = prepare_dataset("smd", smd_params(pca_components=5), smd_spec(["machine-1-1"]), tmp_path / "raw", tmp_path / "p")
    data = load_prepared(out)
    assert data.input_spec.shape == (10, 5) and data.schema["channels"] == [f"pc_{i}" for i in range(1, 6)]


def test_skab_trains_on_the_first_rows_and_tests_on_the_whole_file(tmp_path, caplog):
    raw = tmp_path / "raw"
    (raw / "valve1").mkdir(parents=True)
    header = "datetime;" + ";".join(SKAB_SENSORS) + ";anomaly;changepoint"
    for i, anomalous_from in ((0, 450), (1, 30)):  # file 1 has labelled anomalies inside its training rows
        rows = [f"2020-03-09 10:{t // 60:02d}:{t % 60:02d};" + ";".join(f"{v:.3f}" for v in np.full(8, t / 10)) + f";{float(t >= anomalous_from)};0.0"
                for t in range(500)]
        (raw / "valve1" / f"{i}.csv").write_text("\r\n".join([header, *rows]) + "\r\n")
    spec = DatasetSpec.model_validate({"format": "skab", "base_url": "https://example.invalid/",
                                       "files": {f"valve1_{i}": {"file": f"valve1/{i}.csv", "sha256": SHA} for i in (0, 1)}})
    params = PrepareParams(source="skab", calibration_fraction=0.2, series=SeriesParams(train_rows=400, seq_len=30, stride=10))
    out = prepare_dataset("skab", params, spec, raw, tmp_path / "prepared")
    schema = load_prepared(out).schema
    assert schema["counts"] == {"train_points": 640, "calib_points": 160, "test_points": 1000, "test_anomalous_points": 50 + 470}
    assert schema["labelled_anomalous_training_rows"] == {"valve1/1": 370}
    assert any("labelled anomalous" in r.getMessage() for r in caplog.records)


def test_a_split_too_short_for_a_window_is_a_clear_error(tmp_path):
    write_smd(tmp_path / "raw", "machine-1-1", 30, 120, seed=0)
    with pytest.raises(GadflowError, match="shorter than one window"):
        prepare_dataset("smd", smd_params(), smd_spec(["machine-1-1"]), tmp_path / "raw", tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_smd_spec_needs_all_four_parts_of_each_machine():
    files = {"train_m": {"file": "train/machine-1-1.txt", "sha256": SHA}, "test_m": {"file": "test/machine-1-1.txt", "sha256": SHA}}
    with pytest.raises(Exception, match="machine machine-1-1 lacks interpretation_label, test_label"):
        DatasetSpec.model_validate({"format": "smd", "base_url": "https://example.invalid/", "files": files})
    with pytest.raises(Exception, match="<part>/<machine>.txt"):
        DatasetSpec.model_validate({"format": "smd", "base_url": "https://example.invalid/", "files": {"x": {"file": "other/m.txt", "sha256": SHA}}})


def test_base_url_gives_each_file_its_url():
    spec = smd_spec(["machine-1-1"])
    assert spec.files["train_machine-1-1"].urls == ["https://example.invalid/train/machine-1-1.txt"]


def test_committed_params_declare_every_mirrored_series_file():
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    assert len(params.download["skab"].files) == 35
    assert params.download["smd"].smd_machines() == [f"machine-1-{i}" for i in range(2, 9)] + [f"machine-2-{i}" for i in (1, 2, 3, 4, 5, 7, 8)]
