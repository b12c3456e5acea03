"""Score step: score every test input with the model and its threshold; writes ``scores/``.

The data kind's adapter shapes the tables: images and feature rows get one row each (index, label, class, score,
p_value, is_anomaly); a series' windows get one row each without p-values, and its time points, which the
threshold is about, get points.parquet. The held-out validation anomalies are scored too, for the promotion gate.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from models.registry import load_detector
from models.storage import save_npy, staged_dir
from models.threshold import Calibration

from ..adapters import load_prepared
from ..adapters.base import write_parquet
from ..layout import prepared_dir
from ..settings import Strict

if TYPE_CHECKING:
    from pathlib import Path

    from ..layout import ExperimentLayout
    from ..params import Experiment

log = logging.getLogger(__name__)


class ScoreSettings(Strict):
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 512  # inputs per forward pass (latent-search models: their memory budget decides)


def score(exp: Experiment, layout: ExperimentLayout) -> Path:
    """Score the test split (and the validation anomalies) with the trained model and its threshold."""
    detector = load_detector(layout.model_dir)
    calibration = Calibration.load(layout.threshold, expected_model_id=detector.model_id)
    data = load_prepared(prepared_dir(exp.data))
    batch_size = exp.score.batch_size
    scores = detector.score(data.test, batch_size=batch_size, progress=True)
    tables = data.score_tables(scores, calibration)
    with staged_dir(layout.scores_dir) as staging:
        for role, table in tables.items():
            write_parquet(table, staging / layout.score_tables[role].name)
        if data.val_anomalies is not None:  # the promotion gate's validation set: these against the calibration split
            save_npy(staging / layout.validation_scores.name, detector.score(data.val_anomalies, batch_size=batch_size, progress=True))
    log.info("scored %d test inputs into %s (threshold %.5g)", len(scores), ", ".join(tables), calibration.threshold)
    return layout.scores_dir
