"""SKAB and SMD readers: the real files parse to the manifest's counts; malformed files give one clear line."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from models.errors import GadflowError
from tasks.sources.skab import SKAB_SENSORS, read_skab_csv, skab_experiment_files
from tasks.sources.smd import read_interpretation, read_smd_labels, read_smd_machine, read_smd_values

MIRROR = Path(os.environ.get("GADFLOW_DATA_MIRROR", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
HEADER = "datetime;" + ";".join(SKAB_SENSORS) + ";anomaly;changepoint"


def skab_row(second: int, anomaly: float = 0.0, sensor: str = "1.5") -> str:
    return f"2020-03-09 10:14:{second:02d};" + ";".join([sensor] * 8) + f";{anomaly};0.0"


def write(path: Path, lines: list[str], newline: str = "\n") -> Path:
    path.write_text(newline.join(lines) + newline)
    return path


# --- SKAB --------------------------------------------------------------------------------------
def test_skab_reads_a_wellformed_file_with_crlf(tmp_path):
    frame = read_skab_csv(write(tmp_path / "0.csv", [HEADER, skab_row(1), skab_row(2, 1.0)], "\r\n"))
    assert list(frame.columns) == [*SKAB_SENSORS, "anomaly", "changepoint"]
    assert frame["anomaly"].tolist() == [0, 1] and frame["anomaly"].dtype == np.int8
    assert frame.index.is_monotonic_increasing and frame[SKAB_SENSORS].to_numpy().dtype == np.float64


@pytest.mark.parametrize("lines, labelled, message", [
    ([HEADER.replace(";", ","), skab_row(1).replace(";", ",")], True, "';'-separated, but it looks comma-separated"),
    ([HEADER.removesuffix(";anomaly;changepoint"), skab_row(1).rsplit(";", 2)[0]], True, "column 'anomaly' missing"),
    ([HEADER, skab_row(1), skab_row(2, sensor="")], True, "line 3: empty value in column 'Accelerometer1RMS'"),
    ([HEADER, skab_row(1), skab_row(2, sensor="nan")], True, "line 3: column 'Accelerometer1RMS' has 'nan'"),
    ([HEADER, skab_row(1), skab_row(2, sensor="x1")], True, "line 3: column 'Accelerometer1RMS' has 'x1'"),
    ([HEADER, skab_row(1), skab_row(2, anomaly=2.0)], True, "line 3: label 'anomaly' is 2.0"),
    ([HEADER, skab_row(5), skab_row(3)], True, "line 3: time .* does not come after"),
    ([HEADER, skab_row(5), skab_row(5)], True, "line 3: time .* does not come after"),
    ([HEADER, "yesterday;" + skab_row(1).split(";", 1)[1]], True, "line 2: datetime 'yesterday'"),
    ([HEADER], True, "no data rows"),
])
def test_skab_malformed_files_are_clear_errors(tmp_path, lines, labelled, message):
    with pytest.raises(GadflowError, match=message):
        read_skab_csv(write(tmp_path / "bad.csv", lines), labelled)


def test_skab_anomaly_free_file_needs_no_labels(tmp_path):
    lines = [HEADER.removesuffix(";anomaly;changepoint"), skab_row(1).rsplit(";", 2)[0]]
    assert list(read_skab_csv(write(tmp_path / "free.csv", lines), labelled=False).columns) == SKAB_SENSORS


@pytest.mark.skipif(not (MIRROR / "skab").is_dir(), reason="SKAB not in the mirror")
def test_skab_real_files_match_the_manifest():
    files = skab_experiment_files(MIRROR / "skab")
    assert len(files) == 34 and files[0].parent.name == "valve1" and files[0].name == "0.csv"
    frames = [read_skab_csv(f) for f in files]
    assert sum(len(f) for f in frames) == 37_401
    assert len(read_skab_csv(MIRROR / "skab" / "anomaly-free" / "anomaly-free.csv", labelled=False)) == 9_405


# --- SMD ---------------------------------------------------------------------------------------
def smd_lines(rows: int, metrics: int = 38, value: str = "0.500000") -> list[str]:
    return [",".join([value] * metrics) for _ in range(rows)]


def test_smd_values_plain_and_gzipped(tmp_path):
    plain = write(tmp_path / "m.txt", smd_lines(3))
    gz = tmp_path / "m.txt.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    for path in (plain, gz):
        values = read_smd_values(path)
        assert values.shape == (3, 38) and values.dtype == np.float32 and (values == 0.5).all()


@pytest.mark.parametrize("lines, message", [
    ([";".join(["0.5"] * 38)], "line 1 has 1 comma-separated values, SMD has 38 .*separated"),
    (smd_lines(2) + [",".join(["0.5"] * 37)], "line 3 has 37 comma-separated values"),
    (smd_lines(2) + [",".join(["0.5"] * 37 + ["nan"])], "line 3, column 38: 'nan' is not a finite number"),
    (smd_lines(1) + [",".join(["0.5"] * 36 + ["", "0.5"])], "line 2, column 37: '' is not a finite number"),
    (smd_lines(1) + [",".join(["0.5"] * 39)], "line 2 has 39 comma-separated values"),
])
def test_smd_malformed_values_are_clear_errors(tmp_path, lines, message):
    with pytest.raises(GadflowError, match=message):
        read_smd_values(write(tmp_path / "bad.txt", lines))


def test_smd_labels_and_interpretation(tmp_path):
    assert read_smd_labels(write(tmp_path / "l.txt", ["0", "1", "1"]), 3).tolist() == [0, 1, 1]
    with pytest.raises(GadflowError, match="2 labels for 3 test rows"):
        read_smd_labels(write(tmp_path / "l.txt", ["0", "1"]), 3)
    with pytest.raises(GadflowError, match="line 2: label '0.5'"):
        read_smd_labels(write(tmp_path / "l.txt", ["0", "0.5", "1"]), 3)
    spans = read_interpretation(write(tmp_path / "i.txt", ["1-3:1,38", "5-6:2"]), 10)
    assert [(s.start, s.end, s.channels) for s in spans] == [(1, 3, (0, 37)), (5, 6, (1,))]
    with pytest.raises(GadflowError, match="outside the 10 test rows"):
        read_interpretation(write(tmp_path / "i.txt", ["8-12:1"]), 10)
    with pytest.raises(GadflowError, match="metric indices must be 1..38"):
        read_interpretation(write(tmp_path / "i.txt", ["1-2:0"]), 10)
    with pytest.raises(GadflowError, match="not 'start-end:d1,d2,...'"):
        read_interpretation(write(tmp_path / "i.txt", ["1to2:3"]), 10)


def test_smd_missing_machine_file_names_the_layout(tmp_path):
    with pytest.raises(GadflowError, match="machine-9-9.txt\\(.gz\\): not found"):
        read_smd_machine(tmp_path, "machine-9-9")


@pytest.mark.skipif(not (MIRROR / "smd").is_dir(), reason="SMD not in the mirror")
def test_smd_real_machine_matches_the_manifest():
    machine = read_smd_machine(MIRROR / "smd", "machine-1-2")
    assert machine.train.shape == (23_694, 38) and machine.test.shape == (23_694, 38)
    assert int(machine.test_labels.sum()) == 542 and len(machine.interpretation) == 10
    # Interpretation ranges are the labelled rows (the manifest's check).
    first = machine.interpretation[0]
    assert machine.test_labels[first.start:first.end].all()
