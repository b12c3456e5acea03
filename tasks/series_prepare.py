"""Prepare stage for multivariate time series (SKAB, SMD, SWaT, WADI, KDD99 as a sequence): splits, train-only scaling/PCA, Arrow files.

train  = the normal training series minus its chronological tail
calib  = that tail (``calibration_fraction`` of each training series): thresholds are fitted on it
test   = the labelled test series (point labels; window labels follow ``series.label_rule``)

Per source:
- smd: per machine, train/<m>.txt is the training series and test/<m>.txt with test_label/<m>.txt the test
  series; interpretation_label/<m>.txt is kept for sensor attribution (interpretation.json).
- skab: per experiment file, the first ``train_rows`` rows (SKAB's protocol: 400) are the training series,
  and the whole file is the test series, as SKAB's leaderboard scores it.
- swat, wadi: the normal file (after ``skip_rows``) is the one training series and the attack file the test
  series, both named after the format (``tasks.swat_wadi``).
- kdd99 (with `series:`): the records in file order, their 34 continuous features (``_read_kdd99_sequence``).

The scaling (and optional PCA) is fitted on the concatenated train splits only and saved beside them
(series_transform.json): it travels with the model. Windows are not written; they are views built on load.
"""

from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path

import numpy as np

from models.errors import GadflowError
from models.series_transform import TRANSFORM_FILE, SeriesTransform

from .config import DatasetSpec, KDD99Protocol, PrepareParams, SeriesParams
from .files import atomic_write_text, staged_dir
from .kdd99 import INLIER_CLASS, KDD99_CONTINUOUS, LABEL, read_kdd99
from .series_store import Series, split_writer
from .skab import SKAB_LABELS, SKAB_SENSORS, TRAIN_ROWS, read_skab_csv
from .smd import SMD_METRICS, read_smd_machine
from .swat_wadi import read_swat, read_wadi

log = logging.getLogger(__name__)

SERIES_FILES = {"train": "train.arrow", "calib": "calib.arrow", "test": "test.arrow"}
INTERPRETATION_FILE = "interpretation.json"
SCHEMA = "schema.json"  # the same name as tasks.prepare.SCHEMA


def chronological_split(values: np.ndarray, calibration_fraction: float, min_len: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(T, C) -> the first and the last ``calibration_fraction`` of the rows; both must hold a window."""
    n_calib = int(round(calibration_fraction * len(values)))
    n_train = len(values) - n_calib
    if min(n_calib, n_train) < min_len:
        raise GadflowError(f"{what}: {len(values)} rows split {n_train} / {n_calib} (calibration_fraction {calibration_fraction}) "
                           f"leaves a part shorter than one window (seq_len {min_len})")
    return values[:n_train], values[n_train:]


def _read_smd(spec: DatasetSpec, settings: SeriesParams, raw: Path) -> tuple[dict, dict, dict, dict]:
    """-> normal training series, labelled test series, interpretation ranges (per machine), notes for the schema."""
    machines = settings.machines or spec.smd_machines()
    train, test, interpretation = {}, {}, {}
    for machine in machines:
        m = read_smd_machine(raw, machine)
        train[machine] = m.train
        test[machine] = Series(m.test, m.test_labels)
        interpretation[machine] = [[r.start, r.end, list(r.channels)] for r in m.interpretation]
    return train, test, interpretation, {"channels": [f"metric_{i + 1}" for i in range(SMD_METRICS)]}


def _read_kdd99_sequence(spec: DatasetSpec, settings: SeriesParams, raw: Path, protocol: KDD99Protocol) -> tuple[dict, dict, dict, dict]:
    """KDD Cup 99 read as one sequence in record order (MAD-GAN's setup): its 34 continuous features.

    The anomaly class is ``protocol.anomaly_labels`` (the paper protocol's ``normal.``, about 20 %). With
    test_file ``split``, the last ``test_fraction`` of the 10% file's records is the test series and the
    inlier records before it, in order, the training series: a random split would break the sequence.
    With ``corrected``, the training series is every inlier record of the 10% file and the test series
    the labelled corrected file. Removing anomaly-class records joins the inlier runs around them, so a
    training window may span such a gap; the test series is whole.
    """
    source = read_kdd99(raw / spec.files["train"].file)
    if protocol.test_file == "split":
        n_test = int(round(protocol.test_fraction * len(source)))
        if n_test < settings.seq_len or len(source) - n_test < settings.seq_len:
            raise GadflowError(f"kdd99.test_fraction {protocol.test_fraction} of {len(source)} records leaves a part shorter than one window")
        head, test = source.iloc[: len(source) - n_test], source.iloc[len(source) - n_test:]
    else:
        head, test = source, read_kdd99(raw / spec.files["test"].file)
    inliers = head[~head[LABEL].isin(protocol.anomaly_labels).to_numpy()]
    if len(inliers) < settings.seq_len:
        raise GadflowError(f"kdd99.anomaly_labels: {len(inliers)} inlier records before the test series, fewer than one window")
    labels = test[LABEL].isin(protocol.anomaly_labels).to_numpy().astype(np.int8)
    train = {"kdd99": inliers[KDD99_CONTINUOUS].to_numpy(dtype=np.float32)}
    tests = {"kdd99": Series(test[KDD99_CONTINUOUS].to_numpy(dtype=np.float32), labels)}
    notes = {"channels": KDD99_CONTINUOUS, "protocol": protocol.model_dump(), "inlier_class": INLIER_CLASS,
             "anomaly_class_records_removed_from_training": int(len(head) - len(inliers))}
    return train, tests, {}, notes


def _read_skab(spec: DatasetSpec, settings: SeriesParams, raw: Path) -> tuple[dict, dict, dict, dict]:
    train_rows = settings.train_rows or TRAIN_ROWS
    train, test, contaminated = {}, {}, {}
    for f in spec.files.values():
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
    return train, test, {}, {"channels": SKAB_SENSORS, "labelled_anomalous_training_rows": contaminated}


def _read_swat_wadi(spec: DatasetSpec, settings: SeriesParams, raw: Path) -> tuple[dict, dict, dict, dict]:
    read = {"swat": read_swat, "wadi": read_wadi}[spec.format]
    data = read(raw / spec.files["normal"].file, raw / spec.files["attack"].file, skip_rows=settings.skip_rows or 0)
    return {spec.format: data.train}, {spec.format: Series(data.test, data.test_labels)}, {}, {"channels": data.channels, **data.notes}


def prepare_series(name: str, params: PrepareParams, spec: DatasetSpec, raw: Path, out_dir: Path) -> Path:
    """Write train / calib / test series (transformed), the transform, and schema.json into ``out_dir``."""
    settings = params.series or SeriesParams()
    protocol = params.kdd99 or KDD99Protocol()
    reader = {"smd": _read_smd, "skab": _read_skab, "kdd99": partial(_read_kdd99_sequence, protocol=protocol),
              "swat": _read_swat_wadi, "wadi": _read_swat_wadi}[spec.format]
    train_raw, test_raw, interpretation, notes = reader(spec, settings, Path(raw))
    channels = notes.pop("channels")
    train, calib = {}, {}
    for series_name, values in train_raw.items():
        train[series_name], calib[series_name] = chronological_split(values, params.calibration_fraction, settings.seq_len, f"{name}/{series_name}")
    for series_name, s in test_raw.items():
        if len(s.values) < settings.seq_len:
            raise GadflowError(f"{name}/{series_name}: test series of {len(s.values)} rows is shorter than one window (seq_len {settings.seq_len})")

    # Fitted on the training part only: calib and test are transformed with it, never fitted on.
    log1p = spec.format == "kdd99" and protocol.numeric_transform == "log1p"  # KDD99's heavy-tailed byte counts
    transform = SeriesTransform(settings.scaling, settings.pca_components, log1p=log1p).fit(list(train.values()))
    schema = {
        "name": name,
        "kind": "series",
        "source": params.source,
        "format": spec.format,
        "shape": [settings.seq_len, transform.n_outputs],  # one window: (seq_len, channels after PCA)
        "channels": channels if settings.pca_components is None else [f"pc_{i + 1}" for i in range(transform.n_outputs)],
        "input_channels": channels,
        "windowing": settings.model_dump(exclude={"machines", "train_rows", "skip_rows"}),
        "train_rows": (settings.train_rows or TRAIN_ROWS) if spec.format == "skab" else None,
        "calibration_fraction": params.calibration_fraction,
        "series": list(test_raw),
        "counts": {
            "train_points": int(sum(len(v) for v in train.values())),
            "calib_points": int(sum(len(v) for v in calib.values())),
            "test_points": int(sum(len(s.labels) for s in test_raw.values())),
            "test_anomalous_points": int(sum(int(s.labels.sum()) for s in test_raw.values())),
        },
        "files": {**SERIES_FILES, "transform": TRANSFORM_FILE, **({"interpretation": INTERPRETATION_FILE} if interpretation else {})},
        "source_sha256": {role: f.sha256 for role, f in spec.files.items()},
        **notes,
    }
    with staged_dir(out_dir) as staging:
        # One series at a time: transformed, written, and its raw rows released, so the data is never held twice.
        with split_writer(staging / SERIES_FILES["train"]) as train_out, split_writer(staging / SERIES_FILES["calib"]) as calib_out, \
                split_writer(staging / SERIES_FILES["test"]) as test_out:
            for series_name in list(test_raw):
                if series_name in train:
                    part, held_out = train.pop(series_name), calib.pop(series_name)
                    train_out.write(series_name, Series(transform.transform(part), np.zeros(len(part), dtype=np.int8)))  # unlabelled: normal
                    calib_out.write(series_name, Series(transform.transform(held_out), np.zeros(len(held_out), dtype=np.int8)))
                    del train_raw[series_name], part, held_out
                test = test_raw.pop(series_name)
                test_out.write(series_name, Series(transform.transform(test.values), test.labels))
                del test
        transform.save(staging / TRANSFORM_FILE)
        if interpretation:
            atomic_write_text(staging / INTERPRETATION_FILE, json.dumps(interpretation))
        atomic_write_text(staging / SCHEMA, json.dumps(schema, indent=1))
    log.info("%s: %d series; train %d, calib %d, test %d points (%d anomalous); windows %s", name, len(schema["series"]), *schema["counts"].values(), schema["shape"])
    return out_dir
