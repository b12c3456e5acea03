"""SWaT and WADI (iTrust, Singapore University of Technology and Design) readers: the official CSV exports.

Both datasets are given out only on request by their owners, so the files come from the user's folder
(``tasks.download``) and are read here in the layouts iTrust publishes. Each has a normal recording
(the training series) and an attack recording (the test series), one row per second:

- SWaT A1 (Dec 2015), ``SWaT_Dataset_Normal_v1.csv`` and ``SWaT_Dataset_Attack_v0.csv``: comma-separated,
  optionally one extra line above the header (the spreadsheet's stage titles P1, P2, ...); columns
  ``Timestamp`` (``22/12/2015 4:00:00 PM``: day first, 12-hour clock), the 51 sensors and actuators
  (``SWAT_CHANNELS``) and ``Normal/Attack`` with ``Normal`` or ``Attack``. One release writes ``A ttack``:
  accepted as ``Attack``. Names and values are stripped (the exports write `` Timestamp``, `` MV101``).
- WADI: ``Row``, ``Date`` (``10/9/2017``: month first), ``Time`` (``6:00:00.000 PM``, or without the
  milliseconds), then the sensors, named ``\\\\WIN-25J4RO10SBF\\LOG_DATA\\SUTD_WADI\\LOG_DATA\\1_AIT_001_PV``
  (cut to the part after the last backslash). Lines above the header (the A1 normal file's metadata, the
  A2 attack file's line of column numbers) are skipped: the header is the first line beginning ``Row``.
  A1 (Oct 2017, ``WADI_14days.csv`` and ``WADI_attackdata.csv``) has no label column: its attack file is
  labelled from the attack table of the dataset's PDF (``WADI_A1_ATTACKS``). A2 (Nov 2019,
  ``WADI_14days_new.csv`` and ``WADI_attackdataLABLE.csv``) labels each row in
  ``Attack LABLE (1:No Attack, -1:Attack)``; a label column, when present, always wins over the table.

One repair, documented and logged: WADI channels that are empty over the whole normal file (its all-NaN
sensors) are dropped, from both files; this is decided on the normal file only (after ``skip_rows``).
Anything else malformed (another separator, a missing column, an unknown label, an empty or non-numeric
value, time going backwards, channels that differ between the two files, an attack row in the normal file)
stops with one line naming the file, the line and the column; nothing else is repaired.

``skip_rows`` drops rows from the start of the normal file before anything is decided on it: MAD-GAN
drops SWaT's first 21,600 (its 6-hour start-up transient). It is 0 unless set.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

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

SWAT_CHANNELS = (
    "FIT101", "LIT101", "MV101", "P101", "P102",
    "AIT201", "AIT202", "AIT203", "FIT201", "MV201", "P201", "P202", "P203", "P204", "P205", "P206",
    "DPIT301", "FIT301", "LIT301", "MV301", "MV302", "MV303", "MV304", "P301", "P302",
    "AIT401", "AIT402", "FIT401", "LIT401", "P401", "P402", "P403", "P404", "UV401",
    "AIT501", "AIT502", "AIT503", "AIT504", "FIT501", "FIT502", "FIT503", "FIT504", "P501", "P502", "PIT501", "PIT502", "PIT503",
    "FIT601", "P601", "P602", "P603",
)
# WADI A1's attacks as the dataset's PDF tables them (start, end; both inclusive, plant time). Attacks 3 and 4
# overlap and are one range. The PDF dates attack 9 (1_P_005 on, 1_P_006 off) 10/10/2017, which falls inside
# attack 3's range and is not when the data shows it: it is 11 Oct (row 147,296 of the attack file, which
# starts 9 Oct 18:00:00), as published row-indexed labellings and corrected copies of this table have it.
# Some copies split attack 7 in two and end the second part at 15:00:32; this table keeps the PDF's 14:59:55.
WADI_A1_ATTACKS = (
    ("2017-10-09 19:25:00", "2017-10-09 19:50:16"),
    ("2017-10-10 10:24:10", "2017-10-10 10:34:00"),
    ("2017-10-10 10:55:00", "2017-10-10 11:24:00"),
    ("2017-10-10 11:30:40", "2017-10-10 11:44:50"),
    ("2017-10-10 13:39:30", "2017-10-10 13:50:40"),
    ("2017-10-10 14:48:17", "2017-10-10 14:59:55"),
    ("2017-10-10 17:40:00", "2017-10-10 17:49:40"),
    ("2017-10-11 10:55:00", "2017-10-11 10:56:27"),
    ("2017-10-11 11:17:54", "2017-10-11 11:31:20"),
    ("2017-10-11 11:36:31", "2017-10-11 11:47:00"),
    ("2017-10-11 11:59:00", "2017-10-11 12:05:00"),
    ("2017-10-11 12:07:30", "2017-10-11 12:10:52"),
    ("2017-10-11 12:16:00", "2017-10-11 12:25:36"),
    ("2017-10-11 15:26:30", "2017-10-11 15:37:00"),
)
PREAMBLE_LINES = 10  # lines searched for the header
SEPARATORS = {",": "comma", ";": "semicolon", "\t": "tab"}


@dataclass(frozen=True)
class Layout:
    """One dataset's CSV layout."""

    name: str
    meta: tuple[str, ...]  # the leading non-channel columns; the header line begins with the first
    time_formats: tuple[str, ...]  # of the meta time columns' text, joined by one space; tried in order
    time_columns: tuple[str, ...]
    label: str  # the label column
    label_values: dict[str, int]  # its text -> 1 attack, 0 normal
    channels: tuple[str, ...] | None  # the fixed channel set, or None: the channels the normal file's header names
    attacks: tuple[tuple[str, str], ...] | None  # labels an attack file without a label column; None: the column is required
    drop_empty: bool  # drop channels that are empty over the whole normal file


SWAT = Layout("SWaT", ("Timestamp",), ("%d/%m/%Y %I:%M:%S %p",), ("Timestamp",), "Normal/Attack",
              {"Normal": 0, "Attack": 1, "A ttack": 1}, SWAT_CHANNELS, None, False)
WADI = Layout("WADI", ("Row", "Date", "Time"), ("%m/%d/%Y %I:%M:%S.%f %p", "%m/%d/%Y %I:%M:%S %p"), ("Date", "Time"),
              "Attack LABLE (1:No Attack, -1:Attack)", {"1": 0, "-1": 1}, None, WADI_A1_ATTACKS, True)


@dataclass(frozen=True)
class PlantData:
    """The normal and attack recordings of one dataset, on the same channels."""

    train: np.ndarray  # (T_normal, C) float32: the normal file after skip_rows
    test: np.ndarray  # (T_attack, C) float32: the attack file
    test_labels: np.ndarray  # (T_attack,) int8: 1 = attack
    channels: list[str]
    notes: dict  # for schema.json: skip_rows, where the labels came from, channels dropped as empty


@dataclass(frozen=True)
class _File:
    path: Path
    first_line: int  # the file line of row 0
    channels: list[str]
    values: np.ndarray  # (T, C) float32, NaN where a cell is empty (checked by the caller)
    times: np.ndarray  # (T,) datetime64
    labels: np.ndarray | None  # (T,) int8, or None without a label column


def read_swat(normal: Path, attack: Path, skip_rows: int = 0) -> PlantData:
    """SWaT's normal (training) and attack (test) files."""
    return read_plant(SWAT, normal, attack, skip_rows)


def read_wadi(normal: Path, attack: Path, skip_rows: int = 0) -> PlantData:
    """WADI's normal (training) and attack (test) files, A1 or A2."""
    return read_plant(WADI, normal, attack, skip_rows)


def read_plant(layout: Layout, normal_path: Path, attack_path: Path, skip_rows: int = 0) -> PlantData:
    """Both files of one layout, cross-checked: the attack file must carry the normal file's channels."""
    normal = _read_file(Path(normal_path), layout, label_required=False)
    if skip_rows >= len(normal.times):
        raise GadflowError(f"{normal.path}: skip_rows {skip_rows} leaves none of its {len(normal.times)} rows")
    if normal.labels is not None and normal.labels[skip_rows:].any():
        row = skip_rows + int(np.flatnonzero(normal.labels[skip_rows:])[0])
        raise GadflowError(f"{normal.path}: line {normal.first_line + row}: labelled as an attack, but the normal file trains the model (is it the attack file?)")
    values = normal.values[skip_rows:]
    empty = np.isnan(values).all(axis=0) if layout.drop_empty else np.zeros(len(normal.channels), dtype=bool)
    channels = [c for c, e in zip(normal.channels, empty) if not e]
    dropped = [c for c, e in zip(normal.channels, empty) if e]
    if dropped:
        log.warning("%s: %d channels are empty in every row of the normal file, dropped from both files: %s", layout.name, len(dropped), ", ".join(dropped))
    if not channels:
        raise GadflowError(f"{normal.path}: every channel is empty")
    train = values[:, ~empty]
    _check_finite(normal.path, train, channels, normal.first_line + skip_rows)

    attack = _read_file(Path(attack_path), layout, label_required=layout.attacks is None)
    missing = [c for c in normal.channels if c not in attack.channels]
    extra = [c for c in attack.channels if c not in normal.channels]
    if missing or extra:
        differences = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"extra {', '.join(extra)}"] if extra else [])
        raise GadflowError(f"{attack.path}: its channels differ from those of {normal.path.name}: {'; '.join(differences)}")
    test = attack.values[:, [attack.channels.index(c) for c in channels]]
    _check_finite(attack.path, test, channels, attack.first_line)
    if attack.labels is not None:
        labels, source = attack.labels, f"column '{layout.label}' of the attack file"
    else:
        labels, source = _labels_from_table(attack, layout.attacks), f"the {layout.name} A1 attack table (tasks/sources/swat_wadi.py)"
    log.info("%s: normal %d rows (after skip_rows %d), attack %d rows (%d attack points, labels from %s), %d channels",
             layout.name, len(train), skip_rows, len(test), int(labels.sum()), source, len(channels))
    notes = {"skip_rows": skip_rows, "labels": source, "dropped_empty_channels": dropped}
    return PlantData(train, test, labels, channels, notes)  # both float32 already (read so)


def _clean(name: str) -> str:
    """A column name stripped, and cut to the part after its last backslash (WADI's long prefixes)."""
    return name.strip().rsplit("\\", 1)[-1].strip()


def _find_header(path: Path, layout: Layout) -> tuple[int, list[str]]:
    """(lines above the header, the header's column names): the first line whose first field is the layout's first column."""
    try:
        with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
            lines = [line.rstrip("\r\n") for _, line in zip(range(PREAMBLE_LINES), fh)]
    except FileNotFoundError:
        raise GadflowError(f"{path}: not found") from None
    for i, line in enumerate(lines):
        for sep, sep_name in SEPARATORS.items():
            fields = next(csv.reader([line], delimiter=sep), [""])
            if fields and _clean(fields[0]) == layout.meta[0]:
                if sep != ",":
                    raise GadflowError(f"{path}: line {i + 1}: the header is {sep_name}-separated, but {layout.name}'s CSV files are "
                                       "comma-separated (export it again with ',' between fields and '.' as the decimal point)")
                return i, [_clean(f) for f in fields]
    raise GadflowError(f"{path}: no {layout.name} header (a line beginning with '{layout.meta[0]}') in its first {len(lines)} lines")


def _read_file(path: Path, layout: Layout, label_required: bool) -> _File:
    """One normal or attack file: its header checked, channels as float32, times parsed and checked, labels mapped."""
    preamble, names = _find_header(path, layout)
    header_line = preamble + 1
    if tuple(names[:len(layout.meta)]) != layout.meta:
        raise GadflowError(f"{path}: line {header_line}: the header must begin with {', '.join(layout.meta)} (got {', '.join(names[:len(layout.meta)])})")
    twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if twice is not None:
        raise GadflowError(f"{path}: line {header_line}: column '{twice}' appears twice")
    if label_required and layout.label not in names:
        raise GadflowError(f"{path}: label column '{layout.label}' missing (header, line {header_line}: {', '.join(names[:4])}, ...)")
    channels = [n for n in names[len(layout.meta):] if n != layout.label]
    if layout.channels is not None:
        missing = [c for c in layout.channels if c not in channels]
        if missing:
            raise GadflowError(f"{path}: column '{missing[0]}' missing ({layout.name} has the {len(layout.channels)} channels {layout.channels[0]} ... {layout.channels[-1]})")
        extra = [c for c in channels if c not in layout.channels]
        if extra:
            raise GadflowError(f"{path}: line {header_line}: unexpected column '{extra[0]}' (not one of {layout.name}'s {len(layout.channels)} channels)")
        channels = list(layout.channels)
    text = {*layout.meta, layout.label}
    frame = _read_table(path, preamble, names, text)
    first_line = header_line + 1
    raw_times = frame[layout.time_columns[0]].fillna("").str.strip()
    for column in layout.time_columns[1:]:
        raw_times = raw_times + " " + frame[column].fillna("").str.strip()
    labels = _labels(path, frame[layout.label], layout, first_line) if layout.label in names else None
    return _File(path, first_line, channels, frame[channels].to_numpy(dtype=np.float32), _times(path, raw_times, layout, first_line), labels)


def _read_table(path: Path, preamble: int, names: list[str], text: set[str]) -> pd.DataFrame:
    """The rows under the header: ``text`` columns as strings, the others as float32 (empty cells NaN)."""
    options = dict(skiprows=preamble + 1, header=None, names=list(range(len(names))), index_col=False, skip_blank_lines=False,
                   encoding="utf-8", encoding_errors="replace")
    try:
        frame = pd.read_csv(path, dtype={i: (str if n in text else np.float32) for i, n in enumerate(names)}, **options)
    except pd.errors.ParserError as exc:  # a row with more fields than the header; pandas counts file lines
        raise GadflowError(f"{path}: {str(exc).strip().removeprefix('Error tokenizing data. C error: ')} (the header has {len(names)})") from None
    except ValueError:  # a field that is not a number: find it
        _raise_first_non_number(path, names, text, preamble + 2, options)
    if frame.empty:
        raise GadflowError(f"{path}: no data rows under the header (line {preamble + 1})")
    frame.columns = names
    return frame


def _raise_first_non_number(path: Path, names: list[str], text: set[str], first_line: int, options: dict) -> NoReturn:
    """Raise one line naming the first field of a numeric column that is not a number (read again as text, in chunks)."""
    line = first_line
    for chunk in pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=100_000, **options):
        found = []  # (row, column) of each column's first bad field in this chunk
        for i, name in enumerate(names):
            if name in text:
                continue
            raw = chunk[i].fillna("").str.strip()
            bad = np.flatnonzero((pd.to_numeric(raw, errors="coerce").isna() & (raw != "")).to_numpy())
            if bad.size:
                found.append((int(bad[0]), i))
        if found:
            row, i = min(found)
            raise GadflowError(f"{path}: line {line + row}: column '{names[i]}' has {chunk[i].iloc[row]!r}, not a number")
        line += len(chunk)
    raise GadflowError(f"{path}: could not be read as numbers under the header")


def _check_finite(path: Path, values: np.ndarray, channels: list[str], first_line: int) -> None:
    finite = np.isfinite(values)
    if finite.all():
        return
    row = int(np.flatnonzero(~finite.all(axis=1))[0])
    col = int(np.flatnonzero(~finite[row])[0])
    what = "is empty (or NaN)" if np.isnan(values[row, col]) else f"is {values[row, col]}, not a finite number"
    raise GadflowError(f"{path}: line {first_line + row}: column '{channels[col]}' {what}; missing values are not repaired")


def _times(path: Path, raw: pd.Series, layout: Layout, first_line: int) -> np.ndarray:
    """Parsed with the layout's formats (each tried on what the previous left); they must parse and never go backwards
    (a repeated time is allowed)."""
    times = pd.to_datetime(raw, format=layout.time_formats[0], errors="coerce")
    for fmt in layout.time_formats[1:]:
        unparsed = times.isna()
        times[unparsed] = pd.to_datetime(raw[unparsed], format=fmt, errors="coerce")
    bad = np.flatnonzero(times.isna().to_numpy())
    if bad.size:
        raise GadflowError(f"{path}: line {first_line + bad[0]}: time {raw.iloc[bad[0]]!r} ({' '.join(layout.time_columns)}) "
                           f"is not in the form {' or '.join(layout.time_formats)}")
    stamps = times.to_numpy()
    back = np.flatnonzero(np.diff(stamps) < np.timedelta64(0))
    if back.size:
        i = int(back[0]) + 1
        raise GadflowError(f"{path}: line {first_line + i}: time {times.iloc[i]} comes before {times.iloc[i - 1]} on the line above (time must not go backwards)")
    return stamps


def _labels(path: Path, column: pd.Series, layout: Layout, first_line: int) -> np.ndarray:
    raw = column.fillna("").str.strip()
    codes = raw.map(layout.label_values)
    bad = np.flatnonzero(codes.isna().to_numpy())
    if bad.size:
        raise GadflowError(f"{path}: line {first_line + bad[0]}: label {raw.iloc[bad[0]]!r} in column '{layout.label}' "
                           f"is not one of {', '.join(repr(v) for v in layout.label_values)}")
    return codes.to_numpy(dtype=np.int8)


def _labels_from_table(attack: _File, table: tuple[tuple[str, str], ...]) -> np.ndarray:
    """1 for the rows whose time falls in one of the table's (inclusive) ranges."""
    labels = np.zeros(len(attack.times), dtype=np.int8)
    for start, end in table:
        labels[(attack.times >= np.datetime64(start)) & (attack.times <= np.datetime64(end))] = 1
    if not labels.any():
        raise GadflowError(f"{attack.path}: no label column, and none of the tabulated WADI A1 attacks falls within its times "
                           f"({attack.times[0]} to {attack.times[-1]}); give the attack file a label column (as WADI A2's)")
    return labels


def read_series(name: str, spec: DatasetSpec, params: PrepareParams, settings: SeriesParams, raw: Path) -> SeriesSource:
    """The normal file (after ``skip_rows``) is the one training series and the attack file the test series, both named
    after the format."""
    read = {"swat": read_swat, "wadi": read_wadi}[spec.format]
    data = read(raw / spec.files["normal"].file, raw / spec.files["attack"].file, skip_rows=settings.skip_rows or 0)
    return SeriesSource({spec.format: data.train}, {spec.format: Series(data.test, data.test_labels)}, data.channels, data.notes)
