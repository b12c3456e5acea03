"""Pure PyTorch networks and anomaly detectors. Never imports Prefect, MLflow, DVC or pydantic.

Import from the module that owns a name (``models.registry.get_detector``, ``models.threshold.Calibration``):
this package exports nothing itself, so importing one model never loads the others.
"""
