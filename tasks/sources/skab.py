"""SKAB (Skoltech Anomaly Benchmark) reader.

Each file is one experiment: ``;``-separated, a ``datetime`` column, the 8 sensor columns, and (in
the 34 anomalous files) ``anomaly`` and ``changepoint`` 0/1 labels. ``anomaly-free/anomaly-free.csv``
has no label columns. A malformed file stops with one line naming the file, the row and the rule it
breaks; nothing is repaired silently.
"""

from __future__ import annotations

from pathlib import Path

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from models.errors import GadflowError

from ..adapters.series import SeriesSource
from ..adapters.series_store import Series

if TYPE_CHECKING:
    from ..steps.prepare import PrepareParams, SeriesParams
    from .download import DatasetSpec

log = logging.getLogger(__name__)

SKAB_SENSORS = ["Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Temperature", "Thermocouple",
                "Voltage", "Volume Flow RateRMS"]
SKAB_LABELS = ["anomaly", "changepoint"]
TIME = "datetime"
SEPARATOR = ";"
TRAIN_ROWS = 400  # SKAB's own protocol: fit on the first 400 rows (the normal regime) of each experiment file


def read_skab_csv(path: Path, labelled: bool = True) -> pd.DataFrame:
    """One SKAB file as a frame indexed by time: the 8 sensors (float64), plus the labels (int8) when ``labelled``."""
    path = Path(path)
    try:
        header = path.open(encoding="utf-8").readline().rstrip("\r\n")
    except FileNotFoundError:
        raise GadflowError(f"{path}: not found") from None
    if SEPARATOR not in header:
        other = next((sep for sep in (",", "\t") if sep in header), None)
        found = f"it looks {'comma' if other == ',' else 'tab'}-separated" if other else "no ';' in the header"
        raise GadflowError(f"{path}: SKAB files are ';'-separated, but {found} (header: {header[:80]!r})")
    columns = header.split(SEPARATOR)
    wanted = [TIME, *SKAB_SENSORS, *(SKAB_LABELS if labelled else [])]
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise GadflowError(f"{path}: column '{missing[0]}' missing (header has: {', '.join(columns)})")
    frame = pd.read_csv(path, sep=SEPARATOR, usecols=wanted, dtype=str, keep_default_na=False)
    line = lambda i: i + 2  # noqa: E731  (row i of the frame is line i + 2 of the file: 1-based, after the header)

    values = {}
    for col in [*SKAB_SENSORS, *(SKAB_LABELS if labelled else [])]:
        raw = frame[col].str.strip()
        empty = np.flatnonzero((raw == "").to_numpy())
        if empty.size:
            raise GadflowError(f"{path}: line {line(empty[0])}: empty value in column '{col}' (NaN rows are not repaired; remove or fill them)")
        numbers = pd.to_numeric(raw, errors="coerce")
        bad = np.flatnonzero(numbers.isna().to_numpy() | ~np.isfinite(numbers.to_numpy(dtype=np.float64, na_value=np.nan)))
        if bad.size:
            raise GadflowError(f"{path}: line {line(bad[0])}: column '{col}' has {raw.iloc[bad[0]]!r}, not a finite number")
        values[col] = numbers.to_numpy(dtype=np.float64)
    for col in SKAB_LABELS if labelled else []:
        bad = np.flatnonzero(~np.isin(values[col], (0.0, 1.0)))
        if bad.size:
            raise GadflowError(f"{path}: line {line(bad[0])}: label '{col}' is {values[col][bad[0]]}, must be 0 or 1")
        values[col] = values[col].astype(np.int8)

    times = pd.to_datetime(frame[TIME], errors="coerce", format="%Y-%m-%d %H:%M:%S")
    bad = np.flatnonzero(times.isna().to_numpy())
    if bad.size:
        raise GadflowError(f"{path}: line {line(bad[0])}: datetime {frame[TIME].iloc[bad[0]]!r} is not YYYY-MM-DD HH:MM:SS")
    steps = np.diff(times.to_numpy().astype("datetime64[ns]").astype(np.int64))
    back = np.flatnonzero(steps <= 0)
    if back.size:
        i = back[0] + 1
        raise GadflowError(f"{path}: line {line(i)}: time {times.iloc[i]} does not come after {times.iloc[i - 1]} (times must increase)")
    if len(frame) == 0:
        raise GadflowError(f"{path}: no data rows")
    return pd.DataFrame(values, index=pd.DatetimeIndex(times, name=TIME))


def skab_experiment_files(root: Path) -> list[Path]:
    """The 34 anomalous experiment files under ``root`` (valve1/, valve2/, other/), in a fixed order."""
    root = Path(root)
    groups = ("valve1", "valve2", "other")
    files = sorted((p for group in groups for p in (root / group).glob("*.csv")),
                   key=lambda p: (groups.index(p.parent.name), int(p.stem) if p.stem.isdigit() else 10**9, p.stem))
    if not files:
        raise GadflowError(f"{root}: no SKAB experiment files (expected valve1/*.csv, valve2/*.csv, other/*.csv)")
    return files


def read_series(name: str, spec: DatasetSpec, params: PrepareParams, settings: SeriesParams, raw: Path) -> SeriesSource:
    """SKAB's protocol: per experiment file, the first ``train_rows`` rows (400) are the training series, and the whole
    file is the test series, as SKAB's leaderboard scores it."""
    train_rows = settings.train_rows or TRAIN_ROWS
    train, test, contaminated = {}, {}, {}
    by_path = {f.file: f for f in spec.files.values()}
    for f in (by_path[path] for path in settings.files) if settings.files else spec.files.values():
        name = f.file.removesuffix(".csv")
        frame = read_skab_csv(raw / f.file, labelled=not f.file.startswith("anomaly-free/"))
        if not set(SKAB_LABELS) <= set(frame.columns):
            continue  # the anomaly-free recording: another day's data, drifting; SKAB's protocol does not train on it
        values = frame[SKAB_SENSORS].to_numpy(dtype=np.float32)
        labels = frame["anomaly"].to_numpy(dtype=np.int8)
        if len(values) <= train_rows:
            raise GadflowError(f"{raw / f.file}: {len(values)} rows, not more than train_rows {train_rows}")
        if labels[:train_rows].any():  # SKAB's protocol trains on these rows regardless; choosing rows by label would use test labels
            log.warning("%s: %d of the first %d rows (the training rows, by SKAB's protocol) are labelled anomalous; trained on as they are",
                        raw / f.file, int(labels[:train_rows].sum()), train_rows)
            contaminated[name] = int(labels[:train_rows].sum())
        train[name] = values[:train_rows]
        test[name] = Series(values, labels)
    if not test:
        raise GadflowError(f"{raw}: no labelled SKAB experiment file declared")
    return SeriesSource(train, test, SKAB_SENSORS, {"train_rows": train_rows, "labelled_anomalous_training_rows": contaminated})
