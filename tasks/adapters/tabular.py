"""The tabular adapter: float32 feature tables (parquet) with the preprocessor fitted on the training rows; raw records
for the served model, which applies that preprocessor itself.

The preprocessor (``models.tabular.TabularPreprocessor``: log1p + min-max, one-hot with an ``<unseen>`` column) is
fitted on ``train`` only and written beside the splits; the train step ships it in the model folder.
"""

from __future__ import annotations

import json
import logging
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from models.inputs import InputSpec
from models.storage import atomic_write_text, staged_dir
from models.tabular import TabularPreprocessor

from .base import SCHEMA, PreparedData, ServedInput, write_parquet

if TYPE_CHECKING:
    import pyarrow as pa

    from ..steps.prepare import PrepareParams

log = logging.getLogger(__name__)

TABLE_FILES = {"train": "train.parquet", "calib": "calib.parquet", "test": "test.parquet", "test_raw": "test_raw.parquet"}
VALIDATION_FILE = "val_anomalies.parquet"  # anomaly-class training rows (never trained on), for the promotion gate
PREPROCESSOR_FILE = "preprocessor.json"  # beside the prepared tables, and in a tabular model's folder
LABEL, CLASS = "label", "class"  # the test table's label (1 = anomaly class) and source-class columns


class TableSource(NamedTuple):
    """What a tabular source delivers (``tasks.sources.kdd99.prepare_table``): raw records, split by its protocol."""

    train: pd.DataFrame  # inlier records, the raw feature columns
    calib: pd.DataFrame
    test: pd.DataFrame
    val_anomalies: pd.DataFrame  # may be empty
    test_labels: np.ndarray  # int8 (N_test,), 1 = anomaly class
    test_classes: np.ndarray  # (N_test,) str: the source class of each test record
    test_raw: pd.DataFrame  # the test records as the source has them (features and label), for the served model's users
    categorical: list[str]  # the one-hot columns; every other feature is numeric
    numeric_transform: str  # "log1p" | "none", before min-max scaling


def _feature_table(features: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """float32 (N, F) -> column name -> contiguous float32 (N,)."""
    features = np.asfortranarray(features)
    return {name: features[:, j] for j, name in enumerate(names)}


def write_tables(name: str, params: PrepareParams, fmt: str, source: TableSource, notes: dict, out_dir: Path) -> Path:
    """Fit the preprocessor on the training rows, transform every split and write them, with schema.json, into ``out_dir``."""
    import pyarrow as pa

    pre = TabularPreprocessor.fit(source.train, source.categorical, source.numeric_transform)
    names = pre.feature_names
    parts = {"train": source.train, "calib": source.calib, "test": source.test,
             **({"val_anomalies": source.val_anomalies} if len(source.val_anomalies) else {})}
    features = {key: pre.transform(part) for key, part in parts.items()}
    schema = {
        "name": name,
        "source": params.source,
        "format": fmt,
        "kind": "tabular",
        "shape": [pre.n_features],
        "dtype": "float32",
        "features": names,
        **{k: v for k, v in notes.items() if k != "source_sha256"},
        "counts": {"train": len(source.train), "calib": len(source.calib), "test": len(source.test),
                   "test_anomalous": int(source.test_labels.sum()), "val_anomalies": len(source.val_anomalies)},
        "files": {**TABLE_FILES, "preprocessor": PREPROCESSOR_FILE, **({"val_anomalies": VALIDATION_FILE} if len(source.val_anomalies) else {})},
        "source_sha256": notes.get("source_sha256"),
        "unseen_categories": {"calib": pre.unseen_counts(source.calib), "test": pre.unseen_counts(source.test)},
    }
    with staged_dir(out_dir) as staging:
        for key in ("train", "calib", "val_anomalies"):
            if key in features:
                write_parquet(pa.table(_feature_table(features[key], names)), staging / schema["files"][key])
        test_table = {**_feature_table(features["test"], names), LABEL: source.test_labels,
                      CLASS: pa.array(np.asarray(source.test_classes, dtype=object), pa.string())}
        write_parquet(pa.table(test_table), staging / TABLE_FILES["test"])
        write_parquet(pa.Table.from_pandas(source.test_raw, preserve_index=False), staging / TABLE_FILES["test_raw"])
        pre.save(staging / PREPROCESSOR_FILE)
        (staging / SCHEMA).write_text(json.dumps(schema, indent=1))
    log.info("%s: train %d, calib %d, test %d (%d anomalous), validation anomalies %d, %d features", name, *schema["counts"].values(), pre.n_features)
    return out_dir


class Data(PreparedData):
    """float32 (N, D) feature arrays read from the parquet splits."""

    kind = "tabular"

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec("tabular", tuple(int(v) for v in self.schema["shape"]))

    def split(self, key: str) -> np.ndarray:
        return self._features(TABLE_FILES[key])

    def _features(self, file: str) -> np.ndarray:  # float32 (N, D)
        import pyarrow.parquet as pq

        table = pq.read_table(self.folder / file, columns=self.schema["features"])
        return np.column_stack([table.column(name).to_numpy() for name in self.schema["features"]]).astype(np.float32, copy=False)

    def _test_column(self, column: str):
        import pyarrow.parquet as pq

        return pq.read_table(self.folder / TABLE_FILES["test"], columns=[column]).column(column)

    @cached_property
    def test_labels(self) -> np.ndarray:  # int8 (N_test,)
        return self._test_column(LABEL).to_numpy().astype(np.int8)

    @cached_property
    def test_classes(self) -> np.ndarray:  # (N_test,) str
        return np.asarray(self._test_column(CLASS).to_pylist(), dtype=object)

    @cached_property
    def val_anomalies(self) -> np.ndarray | None:
        file = self.schema["files"].get("val_anomalies")
        return None if file is None else self._features(file)

    def ship(self, model_dir: Path) -> None:
        """The fitted scaler and one-hot vocabularies travel with the weights."""
        atomic_write_text(model_dir / PREPROCESSOR_FILE, (self.folder / PREPROCESSOR_FILE).read_text())


class Served(ServedInput):
    """Raw records with the columns the preprocessor was fitted on (e.g. the 41 KDD99 fields), by name."""

    @cached_property
    def preprocessor(self) -> TabularPreprocessor:
        return TabularPreprocessor.load(self.model_dir / PREPROCESSOR_FILE)

    def example(self) -> pd.DataFrame:
        """Two raw records: numeric 0, each categorical column's first known value."""
        pre = self.preprocessor
        return pd.DataFrame({c: [pre.categorical[c][0]] * 2 if c in pre.categorical else [0.0, 0.0] for c in pre.columns})

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        return self.detector.score(self.preprocessor.transform(pd.DataFrame(frame)))


def prepare(name: str, params: PrepareParams, spec, raw: Path, out_dir: Path, reader) -> Path:
    """The source's reader module splits the records by its protocol and calls ``write_tables`` (``prepare_table``)."""
    return reader.prepare_table(name, params, spec, raw, out_dir)
