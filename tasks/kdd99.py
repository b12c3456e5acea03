"""KDD Cup 99 (a tabular dataset): reader and the prepare stage's one-class split.

train  = inlier rows of the train half minus a seeded inlier calibration split
calib  = that held-out inlier split
test   = the test half of the 10% file (or the `corrected` file), label 1 = anomaly class

The preprocessor (log1p + min-max, one-hot with an `<unseen>` column) is fitted on `train` only and
written beside the splits, so the model carries it.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from models.errors import GadflowError
from models.tabular import PREPROCESSOR_FILE, TabularPreprocessor

from .config import DatasetSpec, KDD99Protocol, PrepareParams
from .files import staged_dir, write_parquet

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

SCHEMA = "schema.json"  # the same name as tasks.prepare.SCHEMA (not imported: prepare dispatches here)
TABULAR_FILES = {"train": "train.parquet", "calib": "calib.parquet", "test": "test.parquet", "test_raw": "test_raw.parquet"}
VALIDATION_FILE = "val_anomalies.parquet"  # the train half's anomaly-class rows (never trained on), for the promotion gate
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


# --- the split -------------------------------------------------------------------------------
def _feature_table(features: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """float32 (N, F) -> column name -> contiguous float32 (N,)."""
    features = np.asfortranarray(features)
    return {name: features[:, j] for j, name in enumerate(names)}


def prepare_kdd99(name: str, params: PrepareParams, spec: DatasetSpec, raw: Path, out_dir: Path) -> Path:
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

    pre = TabularPreprocessor.fit(train[KDD99_FEATURES], KDD99_CATEGORICAL, protocol.numeric_transform)
    names = pre.feature_names
    parts = {"train": train, "calib": calib, "test": test, **({"val_anomalies": val_anomalies} if len(val_anomalies) else {})}
    features = {key: pre.transform(part[KDD99_FEATURES]) for key, part in parts.items()}
    test_labels = test[LABEL].isin(protocol.anomaly_labels).to_numpy().astype(np.int8)  # (N_test,), 1 = anomaly class

    schema = {
        "name": name,
        "source": params.source,
        "format": "kdd99",
        "kind": "tabular",
        "shape": [pre.n_features],
        "dtype": "float32",
        "features": names,
        "protocol": {**protocol.model_dump(), "calibration_fraction": params.calibration_fraction, "seed": params.seed,
                     "inlier_class": INLIER_CLASS},
        "counts": {"train": len(train), "calib": len(calib), "test": len(test), "test_anomalous": int(test_labels.sum()),
                   "val_anomalies": len(val_anomalies)},
        "files": {**TABULAR_FILES, "preprocessor": PREPROCESSOR_FILE, **({"val_anomalies": VALIDATION_FILE} if len(val_anomalies) else {})},
        "source_sha256": {role: f.sha256 for role, f in spec.files.items()},
        "unseen_categories": {"calib": pre.unseen_counts(calib), "test": pre.unseen_counts(test)},
    }
    with staged_dir(out_dir) as staging:
        for key in ("train", "calib", "val_anomalies"):
            if key in features:
                write_parquet(pa.table(_feature_table(features[key], names)), staging / schema["files"][key])
        test_table = {**_feature_table(features["test"], names), LABEL: test_labels, "class": pa.array(test[LABEL].to_numpy(dtype=object), pa.string())}
        write_parquet(pa.table(test_table), staging / TABULAR_FILES["test"])
        write_parquet(pa.Table.from_pandas(test[KDD99_COLUMNS], preserve_index=False), staging / TABULAR_FILES["test_raw"])
        pre.save(staging / PREPROCESSOR_FILE)
        (staging / SCHEMA).write_text(json.dumps(schema, indent=1))
    log.info("%s: train %d, calib %d, test %d (%d anomalous), validation anomalies %d, %d features", name, *schema["counts"].values(), pre.n_features)
    return out_dir
