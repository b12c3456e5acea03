"""SWaT and WADI: readers on small files in the official layouts, clear errors, the user-folder download, prepare end to end."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml

from models.errors import GadflowError
from tasks.adapters import load_prepared
from tasks.steps.prepare import SeriesParams
from tasks.adapters.series_store import read_split
from tasks.params import load_params
from tasks.settings import ParamsError
from tasks.sources.download import MIRROR_ENV, ChecksumError, DatasetSpec, download_dataset
from tasks.sources.swat_wadi import SWAT_CHANNELS, read_swat, read_wadi
from tasks.steps.prepare import PrepareParams, prepare_dataset

REPO = Path(__file__).resolve().parents[1]
SWAT_NORMAL, SWAT_ATTACK = "SWaT_Dataset_Normal_v1.csv", "SWaT_Dataset_Attack_v0.csv"
WADI_NORMAL, WADI_ATTACK = "WADI_14days.csv", "WADI_attackdata.csv"
WADI_PREFIX = "\\\\WIN-25J4RO10SBF\\LOG_DATA\\SUTD_WADI\\LOG_DATA\\"
WADI_CHANNELS = ["1_AIT_001_PV", "1_FIT_001_PV", "2_LS_001_AL", "2_MV_003_STATUS"]  # 2_LS_001_AL: empty in the normal file
WADI_LABEL = '"Attack LABLE (1:No Attack, -1:Attack)"'  # quoted: the name holds a comma


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\r\n".join(lines) + "\r\n")
    return path


def clock(t: datetime, millis: bool = False) -> str:
    """12-hour time as the exports write it: no leading zero on the hour."""
    return f"{t.hour % 12 or 12}:{t.minute:02d}:{t.second:02d}{'.000' if millis else ''} {'AM' if t.hour < 12 else 'PM'}"


# --- SWaT -------------------------------------------------------------------------------------------------
def swat_lines(n: int, start: datetime, attack: range = range(0), label: str = "Attack", extra_line: bool = True) -> list[str]:
    """The SWaT A1 export: an optional line of stage titles, the header (with the exports' stray spaces), one row a second."""
    header = " Timestamp," + ",".join(f" {c}" if c.startswith("MV") else c for c in SWAT_CHANNELS) + ",Normal/Attack"
    rows = []
    for i in range(n):
        t = start + timedelta(seconds=i)
        values = ",".join(f"{(i + j) % 7 + 0.5:.6f}" for j in range(len(SWAT_CHANNELS)))
        rows.append(f" {t.day:02d}/{t.month:02d}/{t.year} {clock(t)},{values},{label if i in attack else 'Normal'}")
    titles = ",".join(["", "P1", "", "", "", "", "P2", *[""] * 46])
    return ([titles] if extra_line else []) + [header, *rows]


def write_swat(folder: Path, n_normal: int = 60, n_attack: int = 40) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    normal = write(folder / SWAT_NORMAL, swat_lines(n_normal, datetime(2015, 12, 22, 16, 0, 0)))
    attack = write(folder / SWAT_ATTACK, swat_lines(n_attack, datetime(2015, 12, 28, 10, 0, 0), attack=range(20, 30), label="A ttack", extra_line=False))
    return normal, attack


def test_swat_reads_both_files_in_the_official_layout(tmp_path):
    normal, attack = write_swat(tmp_path)
    lines = attack.read_text().splitlines()
    lines[5] = lines[5].replace("Normal", "Attack")  # both spellings of an attack row
    attack.write_text("\n".join(lines) + "\n")
    data = read_swat(normal, attack, skip_rows=10)
    assert data.channels == list(SWAT_CHANNELS) and len(data.channels) == 51
    assert data.train.shape == (50, 51) and data.train.dtype == np.float32
    assert data.test.shape == (40, 51) and data.test_labels.dtype == np.int8
    assert data.train[0, 0] == pytest.approx((10 % 7) + 0.5)  # the first 10 rows skipped
    assert np.flatnonzero(data.test_labels).tolist() == [4, *range(20, 30)]
    assert data.notes == {"skip_rows": 10, "labels": "column 'Normal/Attack' of the attack file", "dropped_empty_channels": []}


def read_error(read, normal: Path, attack: Path, edit_normal=None, edit_attack=None) -> str:
    """Edit the files' lines in place (each edit mutates a list of lines), read them, return the one-line error."""
    for path, edit in ((normal, edit_normal), (attack, edit_attack)):
        if edit is not None:
            lines = path.read_text().splitlines()
            edit(lines)
            write(path, lines)
    with pytest.raises(GadflowError) as info:
        read(normal, attack)
    assert "\n" not in str(info.value)
    return str(info.value)


def swat_error(tmp_path: Path, edit_normal=None, edit_attack=None, skip_rows: int = 0) -> str:
    return read_error(lambda n, a: read_swat(n, a, skip_rows), *write_swat(tmp_path), edit_normal, edit_attack)


def replace_field(lines: list[str], line: int, column: int, value: str) -> None:
    fields = lines[line - 1].split(",")
    fields[column] = value
    lines[line - 1] = ",".join(fields)


@pytest.mark.parametrize("edit_normal, edit_attack, message", [
    (lambda ls: ls.__setitem__(slice(None), [ln.replace(",", ";") for ln in ls]), None,
     f"{SWAT_NORMAL}: line 2: the header is semicolon-separated, but SWaT's CSV files are comma-separated"),
    (lambda ls: ls.__setitem__(slice(None), [ln.replace(",", "\t") for ln in ls]), None, "line 2: the header is tab-separated"),
    (None, lambda ls: ls.__setitem__(slice(None), [ln.rsplit(",", 1)[0] for ln in ls]), f"{SWAT_ATTACK}: label column 'Normal/Attack' missing"),
    (None, lambda ls: replace_field(ls, 8, -1, "Atack"), f"{SWAT_ATTACK}: line 8: label 'Atack' in column 'Normal/Attack' is not one of 'Normal', 'Attack', 'A ttack'"),
    (lambda ls: replace_field(ls, 7, 2, ""), None, f"{SWAT_NORMAL}: line 7: column 'LIT101' is empty"),
    (None, lambda ls: replace_field(ls, 12, 51, "NaN"), f"{SWAT_ATTACK}: line 12: column 'P603' is empty"),
    (lambda ls: replace_field(ls, 9, 4, "abc"), None, f"{SWAT_NORMAL}: line 9: column 'P101' has 'abc', not a number"),
    (lambda ls: replace_field(ls, 9, 0, ls[4].split(",")[0]), None, f"{SWAT_NORMAL}: line 9: time 2015-12-22 16:00:02 comes before 2015-12-22 16:00:05"),
    (lambda ls: replace_field(ls, 4, 0, "2015-12-22 16:00:01"), None, f"{SWAT_NORMAL}: line 4: time '2015-12-22 16:00:01' \\(Timestamp\\) is not in the form"),
    (lambda ls: replace_field(ls, 10, -1, "Attack"), None, f"{SWAT_NORMAL}: line 10: labelled as an attack, but the normal file trains the model"),
    (None, lambda ls: ls.__setitem__(0, ls[0].replace(",P603", ",P604")), f"{SWAT_ATTACK}: column 'P603' missing"),
    (None, lambda ls: ls.__setitem__(5, ls[5] + ",1.0"), f"{SWAT_ATTACK}: Expected 53 fields in line 6, saw 54"),
    (lambda ls: ls.__setitem__(slice(1, None), ls[1:2]), None, f"{SWAT_NORMAL}: no data rows under the header"),
])
def test_swat_malformed_files_are_clear_errors(tmp_path, edit_normal, edit_attack, message):
    assert re.search(message, swat_error(tmp_path, edit_normal, edit_attack))


def test_swat_skip_rows_must_leave_rows_and_files_must_exist(tmp_path):
    assert "skip_rows 60 leaves none of its 60 rows" in swat_error(tmp_path, skip_rows=60)
    with pytest.raises(GadflowError, match="absent.csv: not found"):
        read_swat(tmp_path / "absent.csv", tmp_path / "absent.csv")


# --- WADI -------------------------------------------------------------------------------------------------
def wadi_lines(n: int, start: datetime, preamble: list[str], header_names: list[str], empty: set[str] = frozenset(),
               label: dict[int, str] | None = None, millis: bool = True) -> list[str]:
    """A WADI export: lines above the header, Row/Date/Time, long-prefixed sensor names, optionally a label column."""
    header = ["Row", "Date", "Time", *(WADI_PREFIX + c for c in header_names)] + ([WADI_LABEL] if label is not None else [])
    rows = []
    for i in range(n):
        t = start + timedelta(seconds=i)
        values = ["" if c in empty else f"{(3 * i + j) % 5 + 1.25:.4f}" for j, c in enumerate(header_names)]
        rows.append(",".join([str(i + 1), f"{t.month}/{t.day}/{t.year}", clock(t, millis), *values] + ([label.get(i, "1")] if label is not None else [])))
    return [*preamble, ",".join(header), *rows]


A1_PREAMBLE = ["Start time:,9/25/2017 6:00:00 PM", "End time:,10/9/2017 6:00:00 PM", "", "Interval:,1 sec"]


def write_wadi_a1(folder: Path, n_normal: int = 80, attack_start: datetime = datetime(2017, 10, 9, 19, 24, 50)) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    normal = write(folder / WADI_NORMAL, wadi_lines(n_normal, datetime(2017, 9, 25, 18, 0, 0), A1_PREAMBLE, WADI_CHANNELS, empty={"2_LS_001_AL"}))
    attack = write(folder / WADI_ATTACK, wadi_lines(40, attack_start, [], WADI_CHANNELS, empty={"2_LS_001_AL"}))
    return normal, attack


def test_wadi_a1_drops_empty_channels_and_labels_from_the_attack_table(tmp_path, caplog):
    normal, attack = write_wadi_a1(tmp_path)
    data = read_wadi(normal, attack)
    assert data.channels == ["1_AIT_001_PV", "1_FIT_001_PV", "2_MV_003_STATUS"]  # prefixes cut, the empty sensor dropped
    assert data.train.shape == (80, 3) and data.test.shape == (40, 3) and data.train.dtype == np.float32
    assert data.train[1].tolist() == [4.25, 5.25, 2.25]
    assert np.flatnonzero(data.test_labels).tolist() == list(range(10, 40))  # attack 1 starts 19:25:00, 10 s in
    assert data.notes["dropped_empty_channels"] == ["2_LS_001_AL"] and "A1 attack table" in data.notes["labels"]
    assert any("2_LS_001_AL" in r.getMessage() and "dropped" in r.getMessage() for r in caplog.records)


def test_wadi_a2_label_column_and_line_of_column_numbers(tmp_path):
    header_numbers = [",".join(str(i) for i in range(3 + len(WADI_CHANNELS) + 1))]
    normal = write(tmp_path / "WADI_14days_new.csv", wadi_lines(50, datetime(2017, 9, 25, 18), [], WADI_CHANNELS, empty={"2_LS_001_AL"}, millis=False))
    labels = {i: "-1" for i in range(5, 9)}
    lines = wadi_lines(30, datetime(2019, 1, 1), header_numbers, WADI_CHANNELS, label=labels, millis=False)
    lines[1] = lines[1].replace("Row,Date,Time", "Row ,Date ,Time")  # A2's header spells them so
    attack = write(tmp_path / "WADI_attackdataLABLE.csv", lines)
    data = read_wadi(normal, attack)
    assert np.flatnonzero(data.test_labels).tolist() == [5, 6, 7, 8]
    assert data.notes["labels"] == "column 'Attack LABLE (1:No Attack, -1:Attack)' of the attack file"
    assert data.test.shape == (30, 3)  # the column empty in the normal file is dropped although the attack file fills it


def wadi_error(tmp_path: Path, edit_normal=None, edit_attack=None) -> str:
    return read_error(read_wadi, *write_wadi_a1(tmp_path), edit_normal, edit_attack)


@pytest.mark.parametrize("edit_normal, edit_attack, message", [
    (lambda ls: replace_field(ls, 12, 4, ""), None, f"{WADI_NORMAL}: line 12: column '1_FIT_001_PV' is empty \\(or NaN\\); missing values are not repaired"),
    (None, lambda ls: replace_field(ls, 3, 3, ""), f"{WADI_ATTACK}: line 3: column '1_AIT_001_PV' is empty"),
    (None, lambda ls: ls.__setitem__(slice(None), [",".join(ln.split(",")[:4] + ln.split(",")[5:]) for ln in ls]),
     f"{WADI_ATTACK}: its channels differ from those of {WADI_NORMAL}: missing 1_FIT_001_PV"),
    (None, lambda ls: replace_field(ls, 9, 2, "7:24:00.000 PM"), f"{WADI_ATTACK}: line 9: time 2017-10-09 19:24:00 comes before 2017-10-09 19:24:56 on the line above"),
    (lambda ls: replace_field(ls, 6, 1, "2017-09-25"), None, f"{WADI_NORMAL}: line 6: time '2017-09-25 6:00:00.000 PM' \\(Date Time\\) is not in the form"),
    (lambda ls: ls.__setitem__(4, ls[4].replace("Row,Date,Time", "Row,Time,Date")), None, f"{WADI_NORMAL}: line 5: the header must begin with Row, Date, Time"),
    (lambda ls: ls.__setitem__(4, ls[4].replace("1_FIT_001_PV", "1_AIT_001_PV")), None, "line 5: column '1_AIT_001_PV' appears twice"),
    (lambda ls: ls.__setitem__(slice(None), ls[4:]), lambda ls: ls.__setitem__(0, ls[0].replace("Row", "Index")),
     f"{WADI_ATTACK}: no WADI header \\(a line beginning with 'Row'\\)"),
])
def test_wadi_malformed_files_are_clear_errors(tmp_path, edit_normal, edit_attack, message):
    assert re.search(message, wadi_error(tmp_path, edit_normal, edit_attack))


def test_wadi_without_labels_outside_the_a1_attacks_is_an_error(tmp_path):
    normal, attack = write_wadi_a1(tmp_path, attack_start=datetime(2018, 1, 1))
    with pytest.raises(GadflowError, match="no label column, and none of the tabulated WADI A1 attacks falls within its times"):
        read_wadi(normal, attack)


def test_wadi_unknown_label_names_the_line(tmp_path):
    normal = write(tmp_path / "n.csv", wadi_lines(20, datetime(2017, 9, 25, 18), [], WADI_CHANNELS))
    attack = write(tmp_path / "a.csv", wadi_lines(20, datetime(2019, 1, 1), [], WADI_CHANNELS, label={3: "0"}))
    with pytest.raises(GadflowError, match="a.csv: line 5: label '0' in column 'Attack LABLE .*' is not one of '1', '-1'"):
        read_wadi(normal, attack)


# --- config -----------------------------------------------------------------------------------------------
def swat_spec(**extra) -> DatasetSpec:
    return DatasetSpec.model_validate({"format": "swat", "files": {"normal": {"file": SWAT_NORMAL}, "attack": {"file": SWAT_ATTACK}}, **extra})


@pytest.mark.parametrize("spec, message", [
    ({"format": "swat", "files": {"normal": {"file": SWAT_NORMAL}}}, "format 'swat' needs exactly the files \\['attack', 'normal'\\]"),
    ({"format": "wadi", "files": {"normal": {"file": "n.xlsx"}, "attack": {"file": "a.csv"}}}, "official .csv exports, got n.xlsx"),
    ({"format": "swat", "base_url": "https://example.invalid/", "files": {"normal": {"file": "n.csv"}, "attack": {"file": "a.csv"}}},
     "copied from the folder in \\$GADFLOW_SWAT_DIR, never downloaded"),
    ({"format": "skab", "user_dir_env": "MY_DIR", "files": {"a": {"file": "a.csv", "sha256": "0" * 64, "urls": ["https://example.invalid/a"]}}},
     "user_dir_env: only for formats swat and wadi"),
    ({"format": "skab", "files": {"a": {"file": "a.csv", "urls": ["https://example.invalid/a"]}}}, "files.a.sha256: required for format 'skab'"),
    ({"format": "kdd99", "files": {r: {"file": f"{r}.gz", "sha256": "0" * 64} for r in ("train", "test")}}, "files.train.urls: required for format 'kdd99'"),
])
def test_dataset_spec_rules(spec, message):
    with pytest.raises(Exception, match=message):
        DatasetSpec.model_validate(spec)


def test_user_dir_env_defaults_per_format():
    assert swat_spec().user_dir_variable() == "GADFLOW_SWAT_DIR"
    assert swat_spec(user_dir_env="MY_SWAT").user_dir_variable() == "MY_SWAT"
    wadi = DatasetSpec.model_validate({"format": "wadi", "files": {"normal": {"file": WADI_NORMAL}, "attack": {"file": WADI_ATTACK}}})
    assert wadi.user_dir_variable() == "GADFLOW_WADI_DIR"


def test_params_take_swat_with_skip_rows_and_refuse_skip_rows_elsewhere(tmp_path):
    good = yaml.safe_load((REPO / "params.yaml").read_text())
    data = copy.deepcopy(good)
    data["download"]["swat"] = {"format": "swat", "files": {"normal": {"file": SWAT_NORMAL}, "attack": {"file": SWAT_ATTACK}}}
    data["prepare"]["swat"] = {"source": "swat", "series": {"skip_rows": 21600}}
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(data))
    assert load_params(tmp_path / "ok.yaml").prepare["swat"].series.skip_rows == 21600
    data["prepare"]["smd"]["series"]["skip_rows"] = 10
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ParamsError, match="prepare.smd.series.skip_rows: only for swat and wadi datasets"):
        load_params(tmp_path / "bad.yaml")


# --- download: copied from the user's folder ----------------------------------------------------------------
@pytest.fixture
def user_dir(tmp_path, monkeypatch) -> Path:
    """Both SWaT files in a folder named by GADFLOW_SWAT_DIR; the mirror variable points nowhere (it must not be used)."""
    folder = tmp_path / "my-swat"
    write_swat(folder)
    monkeypatch.setenv("GADFLOW_SWAT_DIR", str(folder))
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / "no-mirror"))
    return folder


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_copies_from_the_user_folder_without_sha256(tmp_path, user_dir):
    out = tmp_path / "raw" / "swat"
    assert download_dataset("swat", swat_spec(), out) == out
    assert sorted(p.name for p in out.iterdir()) == sorted([SWAT_NORMAL, SWAT_ATTACK])
    assert (out / SWAT_ATTACK).read_bytes() == (user_dir / SWAT_ATTACK).read_bytes()


def test_download_verifies_a_declared_sha256(tmp_path, user_dir):
    files = {"normal": {"file": SWAT_NORMAL, "sha256": sha(user_dir / SWAT_NORMAL)}, "attack": {"file": SWAT_ATTACK, "sha256": sha(user_dir / SWAT_ATTACK)}}
    out = tmp_path / "raw" / "swat"
    download_dataset("swat", DatasetSpec.model_validate({"format": "swat", "files": files}), out)
    assert sha(out / SWAT_NORMAL) == files["normal"]["sha256"]
    files["attack"]["sha256"] = "0" * 64
    with pytest.raises(ChecksumError, match=f"{SWAT_ATTACK}: sha256 mismatch"):
        download_dataset("swat", DatasetSpec.model_validate({"format": "swat", "files": files}), tmp_path / "raw" / "other")
    assert not (tmp_path / "raw" / "other").exists() and sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["swat"]


def test_download_says_how_to_get_the_data(tmp_path, user_dir, monkeypatch):
    out = tmp_path / "raw" / "swat"
    (user_dir / SWAT_ATTACK).unlink()
    with pytest.raises(GadflowError, match=f"GADFLOW_SWAT_DIR={user_dir}: {SWAT_ATTACK} is not there") as info:
        download_dataset("swat", swat_spec(), out)
    assert "https://itrust.sutd.edu.sg/itrust-labs_datasets/" in str(info.value) and "request" in str(info.value)
    monkeypatch.delenv("GADFLOW_SWAT_DIR")
    with pytest.raises(GadflowError, match="GADFLOW_SWAT_DIR is not set. SWaT is given out only on request by its owners: request it from iTrust"):
        download_dataset("swat", swat_spec(), out)
    monkeypatch.setenv("MY_SWAT", str(tmp_path / "nowhere"))
    with pytest.raises(GadflowError, match="MY_SWAT=.*nowhere: not a folder"):
        download_dataset("swat", swat_spec(user_dir_env="MY_SWAT"), out)
    assert not (tmp_path / "raw").exists()  # checked before anything is staged


# --- prepare end to end -------------------------------------------------------------------------------------
def test_prepare_swat_end_to_end(tmp_path):
    raw = tmp_path / "raw"
    write_swat(raw, n_normal=100, n_attack=60)
    params = PrepareParams(source="swat", calibration_fraction=0.25, series=SeriesParams(seq_len=10, stride=5, skip_rows=20))
    out = prepare_dataset("swat", params, swat_spec(), raw, tmp_path / "prepared")
    assert sorted(p.name for p in out.iterdir()) == ["calib.arrow", "schema.json", "series_transform.json", "test.arrow", "train.arrow"]
    train, calib, test = (read_split(out / f"{part}.arrow")["swat"] for part in ("train", "calib", "test"))
    assert (len(train.values), len(calib.values), len(test.values)) == (60, 20, 60)
    assert test.labels.sum() == 10 and train.values.shape[1] == 51
    schema = json.loads((out / "schema.json").read_text())
    assert schema["format"] == "swat" and schema["input_channels"] == list(SWAT_CHANNELS) and schema["skip_rows"] == 20
    assert "skip_rows" not in schema["windowing"] and schema["counts"]["test_anomalous_points"] == 10
    assert load_prepared(out).input_spec.shape == (10, 51)


def test_prepare_wadi_end_to_end(tmp_path):
    raw = tmp_path / "raw"
    write_wadi_a1(raw)
    spec = DatasetSpec.model_validate({"format": "wadi", "files": {"normal": {"file": WADI_NORMAL}, "attack": {"file": WADI_ATTACK}}})
    params = PrepareParams(source="wadi", calibration_fraction=0.25, series=SeriesParams(seq_len=10, stride=5))
    out = prepare_dataset("wadi", params, spec, raw, tmp_path / "prepared")
    schema = load_prepared(out).schema
    assert schema["input_channels"] == ["1_AIT_001_PV", "1_FIT_001_PV", "2_MV_003_STATUS"]
    assert schema["dropped_empty_channels"] == ["2_LS_001_AL"] and schema["skip_rows"] == 0
    assert schema["counts"] == {"train_points": 60, "calib_points": 20, "test_points": 40, "test_anomalous_points": 30}
