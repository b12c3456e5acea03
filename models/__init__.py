"""Pure PyTorch networks and anomaly detectors. Never imports Prefect, MLflow or DVC.

The package's names load on first use, so that `models.errors` or `models.tabular` can be imported
without importing torch (the download and prepare stages need neither).
"""

from importlib import import_module

_EXPORTS = {
    "Calibration": "threshold",
    "DETECTORS": "registry",
    "Detector": "base",
    "GadflowError": "errors",
    "get_detector": "registry",
    "load_detector": "registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
