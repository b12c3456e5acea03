"""The MLflow pyfunc that carries a detector's weights, preprocessing and threshold.

Logged as an MLflow "model from code": MLflow runs this file at load time (with the
`models` package shipped beside it), so nothing is unpickled.

predict(DataFrame of N rows × C*H*W raw pixel values in [0, 255], row-major (C, H, W))
  -> DataFrame with columns score (higher = more anomalous), p_value, is_anomaly.
"""

from __future__ import annotations

from pathlib import Path

import mlflow.models
import mlflow.pyfunc
import numpy as np
import pandas as pd


class GadflowPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from models import Calibration, load_detector
        from models.threshold import THRESHOLD_FILE

        model_dir = Path(context.artifacts["model"])
        self.detector = load_detector(model_dir, device="auto")
        self.calibration = Calibration.load(model_dir / THRESHOLD_FILE, expected_model_id=self.detector.model_id)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from models.errors import GadflowError

        cfg = self.detector.config
        shape = (cfg.channels, cfg.size, cfg.size)
        values = np.asarray(model_input, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != int(np.prod(shape)):
            raise GadflowError(f"expected {int(np.prod(shape))} pixel columns (C, H, W = {shape}), got input of shape {values.shape}")
        if np.isnan(values).any() or values.min() < 0 or values.max() > 255:
            raise GadflowError("pixel values must be finite and within [0, 255]")
        images = np.rint(values).astype(np.uint8).reshape(-1, *shape)
        scores = self.detector.score(images)
        return pd.DataFrame({
            "score": scores,
            "p_value": self.calibration.p_values(scores),
            "is_anomaly": self.calibration.is_anomaly(scores),
        })


mlflow.models.set_model(GadflowPyfunc())
