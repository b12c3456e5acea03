"""What every data kind's adapter provides: a loaded prepared folder (``PreparedData``) and a served input (``ServedInput``).

A prepared folder holds its splits and ``schema.json``, which names the kind, the sample shape and every file. The
splits are read on first use, so a step reads only what it needs.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from models.inputs import InputSpec
from models.errors import GadflowError
from models.storage import atomic_open

if TYPE_CHECKING:  # annotations only: loading a prepared folder needs neither
    import pyarrow as pa

    from models.threshold import Calibration

SCHEMA = "schema.json"  # every prepared folder's description: kind, shape, files, counts, provenance


def write_parquet(table: pa.Table, path: Path) -> Path:
    """Write a pyarrow Table atomically."""
    import pyarrow.parquet as pq

    with atomic_open(path) as fh:
        pq.write_table(table, fh)
    return Path(path)


def read_schema(folder: Path) -> dict:
    """The schema of a prepared folder, after checking that every file it lists is there (reads no data)."""
    try:
        schema = json.loads((folder / SCHEMA).read_text())
    except FileNotFoundError:
        raise GadflowError(f"{folder}: prepared data incomplete ({SCHEMA} missing); run the prepare stage") from None
    missing = [file for file in schema.get("files", {}).values() if not (folder / file).is_file()]
    if missing:
        raise GadflowError(f"{folder}: prepared data incomplete ({missing[0]} missing); run the prepare stage")
    return schema


class PreparedData:
    """A prepared dataset. Subclasses load the splits of their kind and say what the steps make of the scores.

    ``train``, ``calib`` and ``test`` are the model's inputs (N, ...), ``test_labels`` int8 (N_test,) with 1 = anomaly,
    ``test_classes`` (N_test,) the source class of each test sample, ``val_anomalies`` the held-out training samples
    of the anomaly classes (or None), for the promotion gate's validation split.
    """

    kind: ClassVar[str]  # schema.json's "kind"

    def __init__(self, folder: Path, schema: dict) -> None:
        self.folder, self.schema = Path(folder), schema

    @property
    def input_spec(self) -> InputSpec:
        """What one model input is."""
        raise NotImplementedError

    @cached_property
    def train(self):
        return self.split("train")

    @cached_property
    def calib(self):
        return self.split("calib")

    @cached_property
    def test(self):
        return self.split("test")

    def split(self, key: str):
        raise NotImplementedError

    @cached_property
    def test_labels(self) -> np.ndarray:
        raise NotImplementedError

    @cached_property
    def test_classes(self) -> np.ndarray:
        raise NotImplementedError

    @cached_property
    def val_anomalies(self):
        return None

    # --- what the steps make of the scores ------------------------------------------------------
    def threshold_scores(self, split: str, scores: np.ndarray) -> np.ndarray:
        """The scores of a split's inputs -> the scores thresholds are fitted on (default: the same)."""
        return scores

    def score_tables(self, scores: np.ndarray, calibration: Calibration) -> dict[str, pa.Table]:
        """The test scores as the score step writes them: {"scores": one row per test input (index, label, class, score,
        p_value, is_anomaly)}; a kind whose threshold is about something else (a series' points) says so itself."""
        import pyarrow as pa

        return {"scores": pa.table({
            "index": np.arange(len(scores), dtype=np.int64),
            "label": np.asarray(self.test_labels, dtype=np.int8),
            "class": np.asarray(self.test_classes),  # a plain array (a memory-mapped split's classes too)
            "score": scores,
            "p_value": calibration.p_values(scores),
            "is_anomaly": calibration.is_anomaly(scores),
        })}

    def evaluated(self, tables: dict[str, Path]) -> pd.DataFrame:
        """The rows the report measures (label, score, ...), read from the score step's files (default: "scores")."""
        return pd.read_parquet(tables["scores"])

    def ship(self, model_dir: Path) -> None:
        """Write what a trained model of this data must carry beside its weights (a preprocessor, a transform)."""

    def sample_grid(self, samples: np.ndarray) -> tuple[np.ndarray, int, str] | None:
        """Generated samples -> (uint8 images (N, C, H, W), columns, a note for the title) to draw, or None."""
        return None

    def protocol_note(self) -> str:
        """What the report's protocol line adds for this kind."""
        return ""


class ServedInput:
    """A served model's input: rows of a DataFrame, decoded into model inputs and scored one score per row."""

    def __init__(self, model_dir: Path, detector) -> None:
        self.model_dir, self.detector = Path(model_dir), detector

    def example(self) -> pd.DataFrame:
        """An input example with the columns the model takes (logged with the model as its signature)."""
        raise NotImplementedError

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        """One score per input row (higher = more anomalous)."""
        raise NotImplementedError
