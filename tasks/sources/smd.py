"""SMD (Server Machine Dataset, OmniAnomaly layout) reader.

Per machine: ``train/<m>.txt`` and ``test/<m>.txt`` (headerless, comma-separated, 38 metrics, one
row per minute; optionally gzipped as ``.txt.gz``), ``test_label/<m>.txt`` (one 0/1 per test row)
and ``interpretation_label/<m>.txt`` (lines ``start-end:d1,d2,...``: a 0-based, end-exclusive
test-row range and the 1-based root-cause metrics). Malformed files stop with one line naming the
file and line; nothing is repaired silently.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from models.errors import GadflowError

from ..adapters.series import SeriesSource
from ..adapters.series_store import Series
from ..reports.attribution import INTERPRETATION_FILE  # beside the prepared series: per machine, [start, end, root-cause channels]

if TYPE_CHECKING:
    from ..steps.prepare import PrepareParams, SeriesParams
    from .download import DatasetSpec


SMD_METRICS = 38


@dataclass(frozen=True)
class Interpretation:
    """One labelled anomaly range of the test file and the metrics operators marked as its cause."""

    start: int  # first test row (0-based)
    end: int  # one past the last test row
    channels: tuple[int, ...]  # 0-based metric indices


def machine_file(root: Path, part: str, machine: str) -> Path:
    """``root/part/machine.txt`` or its gzipped form, whichever exists."""
    for name in (f"{machine}.txt", f"{machine}.txt.gz"):
        if (Path(root) / part / name).is_file():
            return Path(root) / part / name
    raise GadflowError(f"{root}/{part}/{machine}.txt(.gz): not found (SMD layout: train/, test/, test_label/, interpretation_label/)")


def _lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return fh.read().splitlines()


def read_smd_values(path: Path, n_metrics: int = SMD_METRICS) -> np.ndarray:
    """A train or test file as float32 (T, n_metrics); every value must be a finite number."""
    path = Path(path)
    try:  # fast path: the C parser straight to floats; any problem is then located by _diagnose_values
        values = pd.read_csv(path, header=None, dtype=np.float64, sep=",").to_numpy()
    except pd.errors.EmptyDataError:
        raise GadflowError(f"{path}: empty file") from None
    except (ValueError, pd.errors.ParserError):
        values = None
    if values is None or values.shape[1] != n_metrics or not np.isfinite(values).all():
        _diagnose_values(path, n_metrics)
    return values.astype(np.float32)


def _diagnose_values(path: Path, n_metrics: int) -> None:
    """Raise one line naming the first malformed line of a values file."""
    for i, line in enumerate(_lines(path), start=1):
        fields = line.split(",")
        if len(fields) != n_metrics:
            hint = " (is it ';'- or tab-separated?)" if len(fields) == 1 else ""
            raise GadflowError(f"{path}: line {i} has {len(fields)} comma-separated values, SMD has {n_metrics}{hint}")
        for j, field in enumerate(fields, start=1):
            try:
                ok = np.isfinite(float(field))
            except ValueError:
                ok = False
            if not ok:
                raise GadflowError(f"{path}: line {i}, column {j}: {field!r} is not a finite number (NaN rows are not repaired)")
    raise GadflowError(f"{path}: could not be read as {n_metrics} comma-separated numbers per line")


def read_smd_labels(path: Path, n_rows: int) -> np.ndarray:
    """``test_label`` as int8 (n_rows,); the row count must match the test file's."""
    path = Path(path)
    lines = [line.strip() for line in _lines(path)]
    bad = next((i for i, line in enumerate(lines) if line not in ("0", "1")), None)
    if bad is not None:
        raise GadflowError(f"{path}: line {bad + 1}: label {lines[bad]!r}, must be 0 or 1")
    if len(lines) != n_rows:
        raise GadflowError(f"{path}: {len(lines)} labels for {n_rows} test rows")
    return np.array(lines, dtype=np.int8)


def read_interpretation(path: Path, n_rows: int, n_metrics: int = SMD_METRICS) -> list[Interpretation]:
    """``interpretation_label`` lines as ranges with 0-based metric indices."""
    path = Path(path)
    out = []
    for i, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            span, dims = line.strip().split(":")
            start, end = (int(v) for v in span.split("-"))
            channels = tuple(int(d) - 1 for d in dims.split(","))
        except ValueError:
            raise GadflowError(f"{path}: line {i}: {line!r} is not 'start-end:d1,d2,...'") from None
        if not 0 <= start < end <= n_rows:
            raise GadflowError(f"{path}: line {i}: range {start}-{end} is outside the {n_rows} test rows")
        if not all(0 <= c < n_metrics for c in channels):
            raise GadflowError(f"{path}: line {i}: metric indices must be 1..{n_metrics}")
        out.append(Interpretation(start, end, channels))
    return out


@dataclass(frozen=True)
class SMDMachine:
    name: str
    train: np.ndarray  # (T_train, 38) float32
    test: np.ndarray  # (T_test, 38) float32
    test_labels: np.ndarray  # (T_test,) int8
    interpretation: list[Interpretation]


def read_smd_machine(root: Path, machine: str) -> SMDMachine:
    """All four files of one machine, cross-checked (same metric count, one label per test row)."""
    train = read_smd_values(machine_file(root, "train", machine))
    test = read_smd_values(machine_file(root, "test", machine))
    labels = read_smd_labels(machine_file(root, "test_label", machine), test.shape[0])
    interpretation = read_interpretation(machine_file(root, "interpretation_label", machine), test.shape[0])
    return SMDMachine(machine, train, test, labels, interpretation)


def read_series(name: str, spec: DatasetSpec, params: PrepareParams, settings: SeriesParams, raw: Path) -> SeriesSource:
    """Per machine, train/<m>.txt is the training series and test/<m>.txt with test_label/<m>.txt the test series;
    interpretation_label/<m>.txt is kept for sensor attribution (interpretation.json)."""
    machines = settings.machines or spec.smd_machines()
    train, test, interpretation = {}, {}, {}
    for machine in machines:
        m = read_smd_machine(raw, machine)
        train[machine] = m.train
        test[machine] = Series(m.test, m.test_labels)
        interpretation[machine] = [[r.start, r.end, list(r.channels)] for r in m.interpretation]
    return SeriesSource(train, test, [f"metric_{i + 1}" for i in range(SMD_METRICS)], {}, extra_files={INTERPRETATION_FILE: interpretation})
