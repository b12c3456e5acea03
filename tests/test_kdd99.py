"""KDD Cup 99: reader, tabular preprocessor and the prepare split, on tiny hand-written CSV files (and the real mirror)."""

from __future__ import annotations

import gzip
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from models.errors import GadflowError
from models.tabular import UNSEEN, TabularPreprocessor
from tasks.adapters import load_prepared
from tasks.adapters.base import SCHEMA
from tasks.adapters.tabular import PREPROCESSOR_FILE, TABLE_FILES
from tasks.sources.kdd99 import KDD99_CATEGORICAL, KDD99_FEATURES, prepare_table, read_kdd99
from tasks.steps.prepare import KDD99Protocol, PrepareParams
from tests.helpers.data import (
    FAKE_SHA, KDD_TEST_FILE, KDD_TRAIN_FILE, corrected_records, kdd_fields, kdd_spec, train_records, write_kdd,
)

N_NUMERIC = 38
MIRROR = Path(os.environ.get("GADFLOW_DATA_MIRROR") or "/work/shared/datasets") / "kddcup99"


def run_prepare(raw: Path, out: Path, seed: int = 0, calibration_fraction: float = 0.1, **protocol) -> Path:
    params = PrepareParams(source="kdd", seed=seed, calibration_fraction=calibration_fraction, kdd99=KDD99Protocol(**protocol) if protocol else None)
    return prepare_table("tiny", params, kdd_spec(), raw, out)


@pytest.fixture
def raw(tmp_path) -> Path:
    """A raw folder with a 200-record 10% file and a 60-record `corrected` file (ids 1000..1059)."""
    folder = tmp_path / "raw"
    folder.mkdir()
    write_kdd(folder / KDD_TRAIN_FILE, train_records())
    write_kdd(folder / KDD_TEST_FILE, corrected_records())
    return folder


def features(out: Path, split: str) -> pd.DataFrame:
    return pq.read_table(out / TABLE_FILES.get(split, f"{split}.parquet")).to_pandas()


def row_ids(out: Path, split: str) -> np.ndarray:
    """Recover src_bytes (the record id) of every row of a split by inverting the fitted scaling."""
    pre = TabularPreprocessor.load(out / PREPROCESSOR_FILE)
    j = pre.numeric.index("src_bytes")
    scaled = features(out, split)["src_bytes"].to_numpy(np.float64) * pre.span[j] + pre.minimum[j]
    return np.rint(np.expm1(scaled) if "src_bytes" in pre.log1p else scaled).astype(int)


def labels_by_id(n: int = 200) -> dict[int, str]:
    return {i: kdd_fields(i)[-1] for i in range(n)}


# --- read_kdd99 ----------------------------------------------------------------------------------
def test_read_gzip_and_plain_give_the_same_frame(tmp_path):
    records = train_records(30)
    gz = read_kdd99(write_kdd(tmp_path / "a.gz", records))
    plain = read_kdd99(write_kdd(tmp_path / "a.csv", records))
    pd.testing.assert_frame_equal(gz, plain)
    assert list(gz.columns) == KDD99_FEATURES + ["label"]
    assert len(gz) == 30 and len(KDD99_FEATURES) == 41
    assert all(gz[c].dtype == np.float64 for c in KDD99_FEATURES if c not in KDD99_CATEGORICAL)
    assert gz["label"].iloc[0] == "normal." and gz["service"].iloc[2] == "ecr_i"


def bad_line(kind: str) -> str:
    fields = kdd_fields(2)
    if kind == "semicolons":
        return ";".join(fields)
    if kind == "short":
        return ",".join(fields[:-1])
    if kind == "long":
        return ",".join(fields + ["extra"])
    if kind == "non_numeric":
        fields[KDD99_FEATURES.index("src_bytes")] = "12kb"
        return ",".join(fields)
    if kind == "empty_field":
        fields[KDD99_FEATURES.index("service")] = ""
        return ",".join(fields)
    if kind == "infinite":
        fields[KDD99_FEATURES.index("duration")] = "inf"
        return ",".join(fields)
    if kind == "empty_numeric":
        fields[KDD99_FEATURES.index("count")] = ""
        return ",".join(fields)
    raise AssertionError(kind)


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("kind, expected", [
    ("semicolons", ["expected 42 comma-separated fields, line 3 has 1 (wrong separator?)"]),
    ("short", ["expected 42 comma-separated fields, line 3 has 41"]),
    ("long", ["expected 42 comma-separated fields, line 3 has 43"]),
    ("non_numeric", ["line 3", "'src_bytes'", "12kb"]),
    ("empty_field", ["line 3", "empty field", "'service'"]),
    ("empty_numeric", ["line 3", "empty field", "'count'"]),
    ("infinite", ["line 3", "'duration'", "not a finite number"]),
])
def test_malformed_file_names_file_and_line(tmp_path, kind, expected, gz):
    path = write_kdd(tmp_path / ("bad.gz" if gz else "bad.csv"), [kdd_fields(0), kdd_fields(1), bad_line(kind), kdd_fields(3)], gz=gz)
    with pytest.raises(GadflowError) as err:
        read_kdd99(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    for part in expected:
        assert part in message
    if kind != "semicolons":
        assert "wrong separator" not in message


def test_all_semicolon_file_and_header_row_and_empty_file(tmp_path):
    with pytest.raises(GadflowError, match=r"line 1 has 1 \(wrong separator\?\)"):
        read_kdd99(write_kdd(tmp_path / "semi.csv", [";".join(kdd_fields(i)) for i in range(5)]))
    with pytest.raises(GadflowError, match=r"line 1: non-numeric value 'duration' in numeric column 'duration'"):
        read_kdd99(write_kdd(tmp_path / "header.csv", [KDD99_FEATURES + ["label"], kdd_fields(1)]))
    with pytest.raises(GadflowError, match="empty.csv: no records"):
        read_kdd99(write_kdd(tmp_path / "empty.csv", []))
    truncated = gzip.compress("\n".join(",".join(kdd_fields(i)) for i in range(500)).encode())[:-40]
    (tmp_path / "truncated.gz").write_bytes(truncated)
    with pytest.raises(GadflowError, match="truncated.gz: cannot read"):
        read_kdd99(tmp_path / "truncated.gz")
    with pytest.raises(GadflowError, match="missing.gz: file not found"):
        read_kdd99(tmp_path / "missing.gz")


def test_prepare_reports_the_malformed_file(raw, tmp_path):
    write_kdd(raw / KDD_TEST_FILE, [*corrected_records(5), bad_line("short")])
    with pytest.raises(GadflowError, match=rf"{KDD_TEST_FILE}: expected 42 comma-separated fields, line 6 has 41"):
        run_prepare(raw, tmp_path / "out", test_file="corrected")
    assert not (tmp_path / "out").exists()


# --- TabularPreprocessor -------------------------------------------------------------------------
def small_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "a": [0.0, 1.0, 3.0, 7.0],  # >= 0: log1p
        "color": ["red", "blue", "red", "green"],
        "b": [-2.0, 0.0, 2.0, 4.0],  # negative: no log1p
        "k": [5.0, 5.0, 5.0, 5.0],  # constant: span 1
        "size": ["s", "m", "s", "s"],
    })


def test_preprocessor_fit_and_transform_values():
    pre = TabularPreprocessor.fit(small_frame(), ["color", "size"])
    assert pre.columns == ["a", "color", "b", "k", "size"]
    assert pre.numeric == ["a", "b", "k"] and pre.log1p == ["a", "k"]
    assert pre.categorical == {"color": ["blue", "green", "red"], "size": ["m", "s"]}
    assert pre.span[2] == 1.0  # constant column
    assert pre.feature_names == ["a", "b", "k", "color=blue", "color=green", "color=red", f"color={UNSEEN}", "size=m", "size=s", f"size={UNSEEN}"]
    assert pre.n_features == 10
    test = pd.DataFrame({"a": [15.0], "color": ["purple"], "b": [-6.0], "k": [6.0], "size": ["m"], "extra": ["ignored"]})
    x = pre.transform(test)
    assert x.dtype == np.float32 and x.shape == (1, 10)
    np.testing.assert_allclose(x[0, :3], [np.log1p(15) / np.log1p(7), -4 / 6, np.log1p(6) - np.log1p(5)], rtol=1e-6)  # no clipping
    assert x[0, 3:].tolist() == [0, 0, 0, 1, 1, 0, 0]  # color unseen, size=m
    assert pre.unseen_counts(pd.concat([test, test])) == {"color": {"purple": 2}, "size": {}}
    train = pre.transform(small_frame())
    assert train[:, :2].min() == 0.0 and train[:, :2].max() == 1.0
    assert (train[:, 3:].sum(axis=1) == 2).all()  # exactly one indicator per categorical column


def test_preprocessor_numeric_transform_none():
    pre = TabularPreprocessor.fit(small_frame(), ["color", "size"], numeric_transform="none")
    assert pre.log1p == []
    np.testing.assert_allclose(pre.transform(small_frame())[:, 0], [0, 1 / 7, 3 / 7, 1], rtol=1e-6)
    with pytest.raises(GadflowError, match="numeric_transform"):
        TabularPreprocessor.fit(small_frame(), ["color", "size"], numeric_transform="sqrt")


def test_preprocessor_save_load_round_trip(tmp_path):
    frame = read_kdd99(write_kdd(tmp_path / "t.gz", train_records(50)))
    pre = TabularPreprocessor.fit(frame[KDD99_FEATURES], KDD99_CATEGORICAL)
    loaded = TabularPreprocessor.load(pre.save(tmp_path / "pre" / "preprocessor.json"))
    assert loaded == pre
    other = read_kdd99(write_kdd(tmp_path / "u.gz", corrected_records(20)))
    assert np.array_equal(loaded.transform(other), pre.transform(other))


def test_preprocessor_load_errors(tmp_path):
    with pytest.raises(GadflowError, match="nothere.json: tabular preprocessor not found"):
        TabularPreprocessor.load(tmp_path / "nothere.json")
    (tmp_path / "corrupt.json").write_text("{not json")
    with pytest.raises(GadflowError, match="corrupt.json: not a readable tabular preprocessor"):
        TabularPreprocessor.load(tmp_path / "corrupt.json")
    data = TabularPreprocessor.fit(small_frame(), ["color", "size"]).to_dict()
    del data["span"]
    (tmp_path / "partial.json").write_text(json.dumps(data))
    with pytest.raises(GadflowError, match="partial.json: not a valid tabular preprocessor"):
        TabularPreprocessor.load(tmp_path / "partial.json")


@pytest.mark.parametrize("change, expected", [
    (lambda f: f.drop(columns=["b"]), "input column 'b' missing"),
    (lambda f: f.assign(a=[0.0, np.nan, 1.0, 2.0]), "column 'a': NaN or infinite value at row 1"),
    (lambda f: f.assign(b=[0.0, 1.0, np.inf, 2.0]), "column 'b': NaN or infinite value at row 2"),
    (lambda f: f.assign(b=["1", "2", "x", "3"]), "column 'b': non-numeric value 'x' at row 2"),
    (lambda f: f.assign(color=["red", None, "red", "red"]), "column 'color': missing \\(NaN\\) categorical value at row 1"),
    (lambda f: f.assign(a=[0.0, 1.0, 2.0, -1.0]), "column 'a': negative value -1 at row 3"),
])
def test_transform_errors_name_the_column(change, expected):
    pre = TabularPreprocessor.fit(small_frame(), ["color", "size"])
    with pytest.raises(GadflowError, match=expected) as err:
        pre.transform(change(small_frame()))
    assert "\n" not in str(err.value)


# --- prepare_table (kdd99 as a table) ------------------------------------------------------------
def test_prepare_writes_the_files_and_feature_count(raw, tmp_path, caplog):
    caplog.set_level("INFO", logger="tasks.adapters.tabular")
    out = run_prepare(raw, tmp_path / "out")
    schema = json.loads((out / SCHEMA).read_text())
    pre = TabularPreprocessor.load(out / PREPROCESSOR_FILE)
    train_ids = row_ids(out, "train")
    vocab = {col: {kdd_fields(i)[KDD99_FEATURES.index(col)] for i in train_ids} for col in KDD99_CATEGORICAL}
    assert {col: set(v) for col, v in pre.categorical.items()} == vocab
    expected = N_NUMERIC + sum(len(v) for v in vocab.values()) + 3
    assert pre.n_features == expected == schema["shape"][0] == len(schema["features"])
    assert {"land", "logged_in", "is_host_login", "is_guest_login"} <= set(pre.numeric) and len(pre.numeric) == N_NUMERIC
    for split in ("train", "calib"):
        assert list(features(out, split).columns) == pre.feature_names
    assert list(features(out, "test").columns) == [*pre.feature_names, "label", "class"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*TABLE_FILES.values(), PREPROCESSOR_FILE, SCHEMA, "val_anomalies.parquet"])
    assert schema["files"] == {**TABLE_FILES, "preprocessor": PREPROCESSOR_FILE, "val_anomalies": "val_anomalies.parquet"}
    assert schema["format"] == "kdd99" and schema["kind"] == "tabular" and schema["source"] == "kdd"
    assert schema["source_sha256"] == {"train": FAKE_SHA, "test": FAKE_SHA}
    assert schema["protocol"] == {"anomaly_labels": ["normal."], "test_fraction": 0.5, "test_file": "split", "numeric_transform": "log1p",
                                  "calibration_fraction": 0.1, "seed": 0, "inlier_class": "every label not in anomaly_labels"}
    assert [r.getMessage() for r in caplog.records] == [f"tiny: train {schema['counts']['train']}, calib {schema['counts']['calib']}, "
                                                        f"test 100 ({schema['counts']['test_anomalous']} anomalous), "
                                                        f"validation anomalies {schema['counts']['val_anomalies']}, {expected} features"]


def test_no_nan_in_written_features(raw, tmp_path):
    write_kdd(raw / KDD_TEST_FILE, [*corrected_records(), kdd_fields(2000, service="icmp", duration=10**7)])
    for test_file in ("split", "corrected"):
        out = run_prepare(raw, tmp_path / test_file, test_file=test_file)
        for split in ("train", "calib", "test"):
            table = pq.read_table(out / TABLE_FILES[split])
            frame = table.to_pandas()
            names = TabularPreprocessor.load(out / PREPROCESSOR_FILE).feature_names
            values = frame[names].to_numpy()
            assert values.dtype == np.float32 and np.isfinite(values).all() and len(values) > 0
        test = features(out, "test")
        assert test["label"].dtype == np.int8 and test["class"].map(type).eq(str).all()


def test_unseen_category_in_test_file(raw, tmp_path):
    records = corrected_records(20)
    records[3] = kdd_fields(1003, service="icmp")
    records[7] = kdd_fields(1007, service="icmp", flag="OTH")
    records[11] = kdd_fields(1011, service="icmp")
    write_kdd(raw / KDD_TEST_FILE, records)
    out = run_prepare(raw, tmp_path / "out", test_file="corrected")
    pre = TabularPreprocessor.load(out / PREPROCESSOR_FILE)
    assert "icmp" not in pre.categorical["service"] and "OTH" not in pre.categorical["flag"]
    test = features(out, "test")
    service_cols = [f"service={v}" for v in pre.categorical["service"]]
    unseen = test[f"service={UNSEEN}"].to_numpy()
    assert np.flatnonzero(unseen).tolist() == [3, 7, 11]
    assert (test.loc[[3, 7, 11], service_cols].to_numpy() == 0).all()
    assert (test[service_cols].sum(axis=1).to_numpy() + unseen == 1).all()
    assert np.flatnonzero(test[f"flag={UNSEEN}"].to_numpy()).tolist() == [7]
    assert test.loc[7, [f"flag={v}" for v in pre.categorical["flag"]]].sum() == 0
    schema = json.loads((out / SCHEMA).read_text())
    assert schema["unseen_categories"]["test"] == {"protocol_type": {}, "service": {"icmp": 3}, "flag": {"OTH": 1}}
    assert schema["unseen_categories"]["calib"] == {"protocol_type": {}, "service": {}, "flag": {}}
    assert len(test) == 20  # nothing dropped


@pytest.mark.parametrize("seed, calibration_fraction, test_fraction", [(0, 0.1, 0.5), (3, 0.25, 0.3), (11, 0.5, 0.7)])
def test_split_sizes_disjointness_and_inliers_only(raw, tmp_path, seed, calibration_fraction, test_fraction):
    out = run_prepare(raw, tmp_path / "out", seed=seed, calibration_fraction=calibration_fraction, test_fraction=test_fraction)
    train, calib, test = (set(row_ids(out, s).tolist()) for s in ("train", "calib", "test"))
    test_raw = pq.read_table(out / TABLE_FILES["test_raw"]).to_pandas()
    assert sorted(test) == test_raw["src_bytes"].astype(int).tolist() == sorted(row_ids(out, "test").tolist())
    labels = labels_by_id()
    half = set(labels) - test
    inliers = {i for i in half if labels[i] != "normal."}
    assert len(test) == round(test_fraction * 200)
    assert len(calib) == round(calibration_fraction * len(inliers)) and len(train) == len(inliers) - len(calib)
    assert train.isdisjoint(calib) and train.isdisjoint(test) and calib.isdisjoint(test)
    assert train | calib == inliers  # no anomaly row of the train half is used
    assert all(labels[i] != "normal." for i in train | calib)
    counts = json.loads((out / SCHEMA).read_text())["counts"]
    half_anomalies = half - inliers
    assert counts == {"train": len(train), "calib": len(calib), "test": len(test), "test_anomalous": sum(labels[i] == "normal." for i in test),
                      "val_anomalies": min(len(calib), len(half_anomalies))}
    assert np.all(np.diff(row_ids(out, "train")) > 0) and np.all(np.diff(row_ids(out, "test")) > 0)  # file order kept


def test_split_seeding(raw, tmp_path):
    ids = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        out = run_prepare(raw, tmp_path / name, seed=seed)
        ids[name] = {s: row_ids(out, s).tolist() for s in ("train", "calib", "test")}
    assert ids["a"] == ids["b"]
    assert (tmp_path / "a" / TABLE_FILES["test"]).read_bytes() == (tmp_path / "b" / TABLE_FILES["test"]).read_bytes()
    assert ids["a"]["test"] != ids["c"]["test"] and ids["a"]["calib"] != ids["c"]["calib"]


def test_test_labels_mark_exactly_the_anomaly_labels(raw, tmp_path):
    anomaly = ["normal.", "back."]
    out = run_prepare(raw, tmp_path / "out", anomaly_labels=anomaly)
    test = features(out, "test")
    test_raw = pq.read_table(out / TABLE_FILES["test_raw"]).to_pandas()
    labels = labels_by_id()
    assert test["class"].tolist() == test_raw["label"].tolist() == [labels[i] for i in row_ids(out, "test")]
    assert test["label"].tolist() == test["class"].isin(anomaly).astype(int).tolist()
    assert 0 < test["label"].sum() < len(test)
    assert all(labels[i] not in anomaly for i in [*row_ids(out, "train"), *row_ids(out, "calib")])
    assert list(test_raw.columns) == KDD99_FEATURES + ["label"]


def test_corrected_uses_the_second_file(raw, tmp_path):
    out = run_prepare(raw, tmp_path / "out", test_file="corrected")
    test_raw = pq.read_table(out / TABLE_FILES["test_raw"]).to_pandas()
    expected = read_kdd99(raw / KDD_TEST_FILE)
    pd.testing.assert_frame_equal(test_raw, expected, check_dtype=False)
    assert row_ids(out, "test").tolist() == list(range(1000, 1060))
    labels = labels_by_id()
    assert set(row_ids(out, "train")) | set(row_ids(out, "calib")) == {i for i, lab in labels.items() if lab != "normal."}
    counts = json.loads((out / SCHEMA).read_text())["counts"]
    assert counts["test"] == 60 and counts["test_anomalous"] == sum(kdd_fields(i)[-1] == "normal." for i in range(1000, 1060))


def test_preprocessor_ignores_test_and_calib_rows(raw, tmp_path):
    first = run_prepare(raw, tmp_path / "first")
    changed = set(row_ids(first, "test").tolist()) | set(row_ids(first, "calib").tolist())
    records = [kdd_fields(i, dst_bytes=10**9, duration=4242, service="weird", flag="XX") if i in changed else kdd_fields(i) for i in range(200)]
    write_kdd(raw / KDD_TRAIN_FILE, records)
    second = run_prepare(raw, tmp_path / "second")
    assert (first / PREPROCESSOR_FILE).read_bytes() == (second / PREPROCESSOR_FILE).read_bytes()
    assert features(first, "train").equals(features(second, "train"))
    assert not features(first, "calib").equals(features(second, "calib"))  # the change did reach calib and test
    assert json.loads((second / SCHEMA).read_text())["unseen_categories"]["calib"]["service"] == {"weird": len(row_ids(second, "calib"))}


def test_shifted_test_set_leaves_the_transform_unchanged(raw, tmp_path):
    first = run_prepare(raw, tmp_path / "first", test_file="corrected")
    shifted = []
    for i in range(1000, 1060):
        base = kdd_fields(i)
        shift = {c: float(base[KDD99_FEATURES.index(c)]) + 500 for c in ("duration", "dst_bytes", "count", "serror_rate")}
        shifted.append(kdd_fields(i, **shift))
    write_kdd(raw / KDD_TEST_FILE, shifted)
    second = run_prepare(raw, tmp_path / "second", test_file="corrected")
    assert (first / PREPROCESSOR_FILE).read_bytes() == (second / PREPROCESSOR_FILE).read_bytes()
    pre = TabularPreprocessor.load(second / PREPROCESSOR_FILE)
    test = features(second, "test")[pre.feature_names].to_numpy()
    assert np.array_equal(test, pre.transform(read_kdd99(raw / KDD_TEST_FILE)))
    assert test[:, pre.numeric.index("serror_rate")].min() > 1.0  # beyond the training range: not clipped


def test_split_errors(raw, tmp_path):
    every_label = sorted(set(labels_by_id().values()))
    with pytest.raises(GadflowError, match="no inliers"):
        run_prepare(raw, tmp_path / "a", anomaly_labels=every_label)
    write_kdd(raw / KDD_TRAIN_FILE, [kdd_fields(i, label="smurf." if i < 3 else "normal.") for i in range(40)])
    with pytest.raises(GadflowError, match="calibration_fraction 0.1 of 3 inlier rows leaves an empty split"):
        run_prepare(raw, tmp_path / "b", test_file="corrected")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# --- the real mirror files -----------------------------------------------------------------------
@pytest.mark.skipif(not (MIRROR / KDD_TRAIN_FILE).is_file(), reason=f"KDD Cup 99 mirror not found at {MIRROR}")
def test_real_kdd99_paper_protocol(tmp_path):
    start = time.perf_counter()
    out = run_prepare(MIRROR, tmp_path / "out")
    seconds = time.perf_counter() - start
    schema = json.loads((out / SCHEMA).read_text())
    counts = schema["counts"]
    n, n_normal = 494_021, 97_278
    assert counts["test"] == round(0.5 * n)
    half_normal = n_normal - counts["test_anomalous"]  # normal. rows of the train half (the anomaly class, unused)
    assert counts["train"] + counts["calib"] == n - counts["test"] - half_normal
    assert counts["calib"] == round(0.1 * (counts["train"] + counts["calib"]))
    assert abs(counts["test_anomalous"] - n_normal / 2) < 1000  # binomial sd ~ 156
    source = read_kdd99(MIRROR / KDD_TRAIN_FILE)
    attacks = source[source["label"] != "normal."]
    pre = TabularPreprocessor.load(out / PREPROCESSOR_FILE)
    for col in KDD99_CATEGORICAL:
        frequency = attacks[col].value_counts()
        assert set(pre.categorical[col]) <= set(frequency.index)
        assert set(frequency[frequency >= 30].index) <= set(pre.categorical[col])  # frequent values all reach train
    assert pre.n_features == N_NUMERIC + sum(len(v) + 1 for v in pre.categorical.values()) == schema["shape"][0]
    assert len(pre.categorical["protocol_type"]) == 3
    assert seconds < 20, f"prepare took {seconds:.1f} s"


def test_validation_anomalies_are_train_half_anomaly_rows_never_test_rows(raw, tmp_path):
    out = run_prepare(raw, tmp_path / "out")
    schema = json.loads((out / SCHEMA).read_text())
    labels = labels_by_id()
    val_ids = set(row_ids(out, "val_anomalies").tolist())
    assert len(val_ids) == schema["counts"]["val_anomalies"] > 0
    assert val_ids and all(labels[i] == "normal." for i in val_ids)  # `normal.` is the anomaly class of the protocol
    assert not val_ids & set(row_ids(out, "test").tolist())
    assert not val_ids & set(row_ids(out, "train").tolist()) and not val_ids & set(row_ids(out, "calib").tolist())
    assert load_prepared(out).val_anomalies.shape == (len(val_ids), schema["shape"][0])
