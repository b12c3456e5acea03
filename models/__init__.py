"""Pure PyTorch networks and anomaly detectors. Never imports Prefect, MLflow or DVC."""

from .base import Detector
from .errors import GadflowError
from .registry import DETECTORS, get_detector, load_detector
from .threshold import Calibration

__all__ = ["Calibration", "DETECTORS", "Detector", "GadflowError", "get_detector", "load_detector"]
