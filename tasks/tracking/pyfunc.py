"""The MLflow pyfunc that carries a detector's weights, its input decoding and its threshold.

Logged as an MLflow "model from code": MLflow runs this file at load time (with the ``models`` and ``tasks``
packages shipped beside it), so nothing is unpickled. Its artifacts are the model folder (weights and the files the
model carries) and the threshold file.

predict(DataFrame) -> DataFrame with columns score (higher = more anomalous), p_value, is_anomaly: one row per input
row. What an input row is belongs to the data kind's adapter (``tasks.adapters``): C·H·W raw pixel values in
[0, 255] (images), a raw record with the preprocessor's columns (tabular), or consecutive raw sensor rows of one
series with the training channels, at least seq_len of them (window models: a row's score is its point score).
"""

from __future__ import annotations

from pathlib import Path

import mlflow.models
import mlflow.pyfunc
import pandas as pd


class GadflowPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from models.registry import load_detector
        from models.threshold import Calibration
        from tasks.adapters import served_input

        model_dir = Path(context.artifacts["model"])
        self.detector = load_detector(model_dir, device="auto")
        self.calibration = Calibration.load(Path(context.artifacts["threshold"]), expected_model_id=self.detector.model_id)
        self.input = served_input(model_dir, self.detector)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        scores = self.input.scores(pd.DataFrame(model_input))
        return pd.DataFrame({
            "score": scores,
            "p_value": self.calibration.p_values(scores),
            "is_anomaly": self.calibration.is_anomaly(scores),
        })


mlflow.models.set_model(GadflowPyfunc())
