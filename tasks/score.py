"""Score step: score every test sample with the model and its threshold; write scores.parquet."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NONE

from models import Calibration, load_detector
from models.threshold import THRESHOLD_FILE

from .files import save_npy, write_parquet
from .prepare import load_prepared

log = logging.getLogger(__name__)

POINTS_FILE = "points.parquet"  # time series only: one row per scored test point
VALIDATION_SCORES_FILE = "calibration/val_anomaly_scores.npy"  # scores of the held-out validation anomalies (never test data)


@task(cache_policy=NONE, persist_result=False)
def score_test_set(model_dir: Path, data_dir: Path, out_dir: Path, batch_size: int = 512) -> Path:
    """Columns: index, label (1 = anomaly), class, score, p_value, is_anomaly.

    A time series' threshold and calibration scores are about points, so its window rows carry index, label,
    class (the series) and score only; the points, with their p-values and flags, go to points.parquet."""
    detector = load_detector(model_dir)
    calibration = Calibration.load(model_dir / THRESHOLD_FILE, expected_model_id=detector.model_id)
    data = load_prepared(data_dir)
    scores = detector.score(data.test, batch_size=batch_size, progress=True)
    columns = {
        "index": np.arange(len(scores), dtype=np.int64),
        "label": np.asarray(data.test_labels, dtype=np.int8),
        "class": data.test_classes if data.kind != "image" else np.asarray(data.test_classes, dtype=np.int16),  # str label / series | digit
        "score": scores,
    }
    if data.kind != "series":
        columns.update(p_value=calibration.p_values(scores), is_anomaly=calibration.is_anomaly(scores))
        log.info("scored %d test samples; %d flagged at threshold %.5g", len(scores), int(columns["is_anomaly"].sum()), calibration.threshold)
    path = write_parquet(pa.table(columns), out_dir / "scores.parquet")
    if data.val_anomalies is not None:  # the promotion gate's validation set: these against the calibration split
        save_npy(out_dir / VALIDATION_SCORES_FILE, detector.score(data.val_anomalies, batch_size=batch_size, progress=True))
    else:  # data prepared without validation anomalies: no earlier run's scores may stand in for them
        (out_dir / VALIDATION_SCORES_FILE).unlink(missing_ok=True)
    if data.kind == "series":  # the time points the alerts are about: points.parquet beside the window scores
        from .series_scores import point_scores_by_series, points_table

        points = points_table(data, point_scores_by_series(data, "test", scores), calibration)
        write_parquet(points, out_dir / POINTS_FILE)
        log.info("scored %d test windows, mapped to %d test points; %d flagged at threshold %.5g", len(scores), points.num_rows,
                 int(points["is_anomaly"].to_numpy().sum()), calibration.threshold)
    return path
