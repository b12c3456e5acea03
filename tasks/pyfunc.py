"""The MLflow pyfunc that carries a detector's weights, preprocessing and threshold.

Logged as an MLflow "model from code": MLflow runs this file at load time (with the
`models` package shipped beside it), so nothing is unpickled.

predict(DataFrame of N rows × C*H*W raw pixel values in [0, 255], row-major (C, H, W)), or, for a
tabular model, N raw records with the columns its preprocessor was fitted on (e.g. the 41 KDD99 fields)
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
        from models.tabular import PREPROCESSOR_FILE, TabularPreprocessor
        from models.threshold import THRESHOLD_FILE

        model_dir = Path(context.artifacts["model"])
        self.detector = load_detector(model_dir, device="auto")
        self.calibration = Calibration.load(model_dir / THRESHOLD_FILE, expected_model_id=self.detector.model_id)
        preprocessor = model_dir / PREPROCESSOR_FILE  # tabular models: the prepare stage's fitted scaler and vocabularies
        self.preprocessor = TabularPreprocessor.load(preprocessor) if preprocessor.is_file() else None

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        inputs = self._features(model_input) if self.preprocessor is not None else self._images(model_input)
        scores = self.detector.score(inputs)
        return pd.DataFrame({
            "score": scores,
            "p_value": self.calibration.p_values(scores),
            "is_anomaly": self.calibration.is_anomaly(scores),
        })

    def _features(self, model_input: pd.DataFrame) -> np.ndarray:
        """Raw records -> float32 features (N, D), by the preprocessor fitted on the training data."""
        return self.preprocessor.transform(pd.DataFrame(model_input))

    def _images(self, model_input: pd.DataFrame) -> np.ndarray:
        """Pixel rows -> uint8 images (N, C, H, W)."""
        from models.errors import GadflowError

        shape = self.detector.input_shape
        values = np.asarray(model_input, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != int(np.prod(shape)):
            raise GadflowError(f"expected {int(np.prod(shape))} pixel columns (C, H, W = {shape}), got input of shape {values.shape}")
        if np.isnan(values).any() or values.min() < 0 or values.max() > 255:
            raise GadflowError("pixel values must be finite and within [0, 255]")
        return np.rint(values).astype(np.uint8).reshape(-1, *shape)


mlflow.models.set_model(GadflowPyfunc())
