"""KDD Cup 99: the reader, and its one-class protocol as a table (``prepare_table``) or as one sequence (``read_series``).

As a table (the EGBAD / ALAD / DAGMM paper protocol by default):
train  = inlier rows of the train half minus a seeded inlier calibration split
calib  = that held-out inlier split
test   = the test half of the 10% file (or the `corrected` file), label 1 = anomaly class
The tabular adapter fits the preprocessor (log1p + min-max, one-hot with an `<unseen>` column) on `train` only.
"""

from __future__ import annotations

import gzip
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from typing import TYPE_CHECKING

from models.errors import GadflowError

from ..adapters.series import SeriesSource
from ..adapters.series_store import Series
from ..adapters.tabular import TableSource, write_tables
from ..steps.prepare import KDD99Protocol

if TYPE_CHECKING:
    from ..steps.prepare import PrepareParams, SeriesParams
    from .download import DatasetSpec

log = logging.getLogger(__name__)

KDD99_FEATURES = [
    "duration", "protocol_type", "service", "flag", "src_bytes", "dst_bytes", "land", "wrong_fragment", "urgent", "hot",
    "num_failed_logins", "logged_in", "num_compromised", "root_shell", "su_attempted", "num_root", "num_file_creations",
    "num_shells", "num_access_files", "num_outbound_cmds", "is_host_login", "is_guest_login", "count", "srv_count",
    "serror_rate", "srv_serror_rate", "rerror_rate", "srv_rerror_rate", "same_srv_rate", "diff_srv_rate",
    "srv_diff_host_rate", "dst_host_count", "dst_host_srv_count", "dst_host_same_srv_rate", "dst_host_diff_srv_rate",
    "dst_host_same_src_port_rate", "dst_host_srv_diff_host_rate", "dst_host_serror_rate", "dst_host_srv_serror_rate",
    "dst_host_rerror_rate", "dst_host_srv_rerror_rate",
]
KDD99_CATEGORICAL = ["protocol_type", "service", "flag"]
KDD99_NUMERIC = [c for c in KDD99_FEATURES if c not in KDD99_CATEGORICAL]
KDD99_BINARY = ["land", "logged_in", "is_host_login", "is_guest_login"]
KDD99_CONTINUOUS = [c for c in KDD99_NUMERIC if c not in KDD99_BINARY]  # the 34 continuous features (MAD-GAN's KDD99 setup)
LABEL = "label"
KDD99_COLUMNS = [*KDD99_FEATURES, LABEL]

INLIER_CLASS = "every label not in anomaly_labels"


# --- reading -----------------------------------------------------------------------------------
def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _diagnose(path: Path, gzipped: bool) -> str | None:
    """Scan the file line by line for the first malformed record; None when every line looks fine."""
    numeric = {KDD99_COLUMNS.index(c) for c in KDD99_NUMERIC}
    opener = gzip.open if gzipped else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as fh:
            for line_no, line in enumerate(fh, start=1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue  # the parser skips blank lines too
                fields = line.split(",")
                if len(fields) != len(KDD99_COLUMNS):
                    hint = " (wrong separator?)" if len(fields) == 1 else ""
                    return f"expected {len(KDD99_COLUMNS)} comma-separated fields, line {line_no} has {len(fields)}{hint}"
                for i, value in enumerate(fields):
                    if not value.strip():
                        return f"line {line_no}: empty field in column '{KDD99_COLUMNS[i]}'"
                    if i in numeric:
                        try:
                            number = float(value)
                        except ValueError:
                            return f"line {line_no}: non-numeric value {value[:40]!r} in numeric column '{KDD99_COLUMNS[i]}'"
                        if not math.isfinite(number):
                            return f"line {line_no}: value {value!r} in numeric column '{KDD99_COLUMNS[i]}' is not a finite number"
    except (OSError, EOFError) as exc:
        return f"cannot read ({exc})"
    return None


def read_kdd99(path: Path) -> pd.DataFrame:
    """A headerless KDD Cup 99 CSV (gzip or plain) -> 41 feature columns + `label` (numeric as float64, others str)."""
    path = Path(path)
    if not path.is_file():
        raise GadflowError(f"{path}: file not found; run the download stage")
    dtypes = {c: (np.float64 if c in KDD99_NUMERIC else str) for c in KDD99_COLUMNS}
    try:
        gzipped = _is_gzip(path)
        frame = pd.read_csv(
            path, header=None, names=KDD99_COLUMNS, dtype=dtypes, sep=",", engine="c",
            compression="gzip" if gzipped else None, keep_default_na=False, na_values=[""],
        )
        problem = None
        if frame[KDD99_CATEGORICAL + [LABEL]].isna().to_numpy().any() or not np.isfinite(frame[KDD99_NUMERIC].to_numpy()).all():
            problem = _diagnose(path, gzipped) or "missing or non-finite values"
    except pd.errors.EmptyDataError:
        raise GadflowError(f"{path}: no records (empty file)") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise GadflowError(f"{path}: cannot read ({exc})") from None
    except (ValueError, pd.errors.ParserError) as exc:  # slow path only on failure: find the offending line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        problem = _diagnose(path, gzipped) or f"cannot parse as KDD Cup 99 CSV ({first})"
    if problem:
        raise GadflowError(f"{path}: {problem}")
    if len(frame) == 0:
        raise GadflowError(f"{path}: no records")
    return frame


# --- the table -------------------------------------------------------------------------------
def prepare_table(name: str, params: PrepareParams, spec: DatasetSpec, raw: Path, out_dir: Path) -> Path:
    """Build the one-class train / calib / test split of a kdd99 dataset into ``out_dir``."""
    protocol = params.kdd99 or KDD99Protocol()
    raw = Path(raw)
    source = read_kdd99(raw / spec.files["train"].file)
    n = len(source)
    if protocol.test_file == "split":
        n_test = int(round(protocol.test_fraction * n))
        if n_test < 1 or n_test >= n:
            raise GadflowError(f"prepare.{name}.kdd99.test_fraction {protocol.test_fraction} of {n} rows leaves an empty split")
        order = np.random.default_rng(params.seed).permutation(n)
        half, test = source.iloc[np.sort(order[n_test:])], source.iloc[np.sort(order[:n_test])]  # index = 0-based file record
    else:
        half, test = source, read_kdd99(raw / spec.files["test"].file)

    inlier_rows = np.flatnonzero(~half[LABEL].isin(protocol.anomaly_labels).to_numpy())
    if inlier_rows.size == 0:
        present = sorted(half[LABEL].unique().tolist())
        listed = ", ".join(present[:8]) + (f" ... ({len(present)} labels)" if len(present) > 8 else "")
        raise GadflowError(f"prepare.{name}.kdd99.anomaly_labels: every training row has an anomaly label, so there are no inliers "
                           f"to train on (labels present: {listed})")
    n_calib = int(round(params.calibration_fraction * inlier_rows.size))
    if n_calib < 1 or n_calib >= inlier_rows.size:
        raise GadflowError(f"prepare.{name}.calibration_fraction {params.calibration_fraction} of {inlier_rows.size} inlier rows leaves an empty split")
    shuffled = np.random.default_rng([params.seed, 1]).permutation(inlier_rows)
    calib, train = half.iloc[np.sort(shuffled[:n_calib])], half.iloc[np.sort(shuffled[n_calib:])]
    # validation anomalies: a seeded draw of the train half's anomaly-class rows, as many as the calibration split
    anomaly_rows = np.flatnonzero(half[LABEL].isin(protocol.anomaly_labels).to_numpy())
    val_anomalies = half.iloc[np.sort(np.random.default_rng([params.seed, 2]).permutation(anomaly_rows)[:n_calib])]
    table = TableSource(
        train=train[KDD99_FEATURES], calib=calib[KDD99_FEATURES], test=test[KDD99_FEATURES], val_anomalies=val_anomalies[KDD99_FEATURES],
        test_labels=test[LABEL].isin(protocol.anomaly_labels).to_numpy().astype(np.int8),  # (N_test,), 1 = anomaly class
        test_classes=test[LABEL].to_numpy(dtype=object), test_raw=test[KDD99_COLUMNS],
        categorical=KDD99_CATEGORICAL, numeric_transform=protocol.numeric_transform,
    )
    protocol_notes = {**protocol.model_dump(), "calibration_fraction": params.calibration_fraction, "seed": params.seed, "inlier_class": INLIER_CLASS}
    return write_tables(name, params, "kdd99", table, {"protocol": protocol_notes,
                                                       "source_sha256": {role: f.sha256 for role, f in spec.files.items()}}, out_dir)


# --- the sequence ----------------------------------------------------------------------------
def read_series(name: str, spec: DatasetSpec, params: PrepareParams, settings: SeriesParams, raw: Path) -> SeriesSource:
    """KDD Cup 99 read as one sequence in record order (MAD-GAN's setup): its 34 continuous features.

    The anomaly class is ``protocol.anomaly_labels`` (the paper protocol's ``normal.``, about 20 %). With
    test_file ``split``, the last ``test_fraction`` of the 10% file's records is the test series and the
    inlier records before it, in order, the training series: a random split would break the sequence.
    With ``corrected``, the training series is every inlier record of the 10% file and the test series
    the labelled corrected file. Removing anomaly-class records joins the inlier runs around them, so a
    training window may span such a gap; the test series is whole. A fixed log(1 + x) comes before the
    scaling when ``numeric_transform`` is log1p (KDD99's heavy-tailed byte counts).
    """
    protocol = params.kdd99 or KDD99Protocol()
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
    notes = {"protocol": protocol.model_dump(), "inlier_class": INLIER_CLASS,
             "anomaly_class_records_removed_from_training": int(len(head) - len(inliers))}
    return SeriesSource(train={"kdd99": inliers[KDD99_CONTINUOUS].to_numpy(dtype=np.float32)},
                        test={"kdd99": Series(test[KDD99_CONTINUOUS].to_numpy(dtype=np.float32), labels)},
                        channels=KDD99_CONTINUOUS, notes=notes, log1p=protocol.numeric_transform == "log1p")
