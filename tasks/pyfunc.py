"""The MLflow pyfunc that carries a detector's weights, preprocessing and threshold.

Logged as an MLflow "model from code": MLflow runs this file at load time (with the
`models` package shipped beside it), so nothing is unpickled.

predict(DataFrame of N rows × C*H*W raw pixel values in [0, 255], row-major (C, H, W)), or, for a
tabular model, N raw records with the columns its preprocessor was fitted on (e.g. the 41 KDD99 fields),
or, for a window model (MAD-GAN), N ≥ seq_len consecutive raw sensor rows of one series, in time order,
with the training series' channel columns (an image-sequence model: consecutive frames, one row of C·H·W
pixel values / 255 each, columns px_0 ...)
  -> DataFrame with columns score (higher = more anomalous), p_value, is_anomaly: one row per input row
     (a window model's row scores are its point scores: the mean or max over the windows covering the row).
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
        self.series = SeriesScorer(model_dir, self.detector) if (model_dir / "series_transform.json").is_file() else None

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if self.series is not None:
            scores = self.series.point_scores(pd.DataFrame(model_input))
        else:
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


class SeriesScorer:
    """Raw sensor rows of one series -> point scores, with the transform and windowing the model was trained with."""

    def __init__(self, model_dir: Path, detector) -> None:
        import json

        from models.series_transform import TRANSFORM_FILE, WINDOWING_FILE, SeriesTransform

        self.detector = detector
        self.transform = SeriesTransform.load(model_dir / TRANSFORM_FILE)
        self.windowing = json.loads((model_dir / WINDOWING_FILE).read_text())

    def point_scores(self, rows: pd.DataFrame) -> np.ndarray:
        from models.errors import GadflowError
        from models.windowing import point_scores, sliding_windows

        channels = self.windowing["input_channels"]
        missing = [c for c in channels if c not in rows.columns]
        if missing:
            raise GadflowError(f"input column '{missing[0]}' missing ({len(missing)} of the {len(channels)} sensor columns absent)")
        # float32 first, as the prepare stage stores raw values: the latent search's restarts are keyed by the
        # window's bytes, so the same rows must give the same bytes to give the pipeline's scores.
        raw = rows[channels].to_numpy(dtype=np.float32)
        values = self.transform.transform(raw)  # (T, K); refuses NaN
        w = self.windowing
        # Serving scores every row: one more window always ends at the last row (tail rule 'align_end', whatever
        # the training data used; the tail rule only decides which windows exist, not what a window is).
        windows = sliding_windows(values, w["seq_len"], w["stride"], "align_end")  # needs T >= seq_len
        window_scores = self.detector.score(windows[:])
        return point_scores(window_scores, windows.starts, w["seq_len"], len(values), w["point_rule"])


mlflow.models.set_model(GadflowPyfunc())
