"""Model name -> detector class, imported on first use, and what each model can do.

The names are params.yaml's ``experiments.<name>.model.kind``. A model is imported only when asked for, so a
step that uses one model never loads the others (and the DVC stages list only the model they run).
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from .base import MODEL_FILE, Capabilities, Detector
from .errors import GadflowError
from .storage import load_checkpoint

MODELS = {  # name -> "module:class"
    "dcgan": "models.dcgan:DCGANDetector",
    "adgan": "models.latent_gans:ADGANDetector",
    "anogan": "models.latent_gans:AnoGANDetector",
    "egbad": "models.egbad:EGBADDetector",
    "ganomaly": "models.ganomaly:GANomalyDetector",
    "madgan": "models.madgan:MADGANDetector",
    "knn": "models.reference:KNNDetector",  # references without a GAN, fitted on the same training normals
    "pca": "models.reference:PCADetector",
}


def model_names() -> list[str]:
    return list(MODELS)


def model_module(kind: str) -> str:
    """The module that defines model ``kind`` (e.g. 'models.latent_gans')."""
    _known(kind)
    return MODELS[kind].partition(":")[0]


def get_detector(kind: str) -> type[Detector]:
    _known(kind)
    module, _, name = MODELS[kind].partition(":")
    return getattr(import_module(module), name)


def capabilities(kind: str) -> Capabilities:
    return get_detector(kind).capabilities


def load_detector(directory: Path, device: str = "auto") -> Detector:
    """Load whichever detector ``directory/model.pt`` holds."""
    path = Path(directory) / MODEL_FILE
    payload = load_checkpoint(path)
    return get_detector(str(payload.get("kind", "?"))).from_payload(payload, path, device)


def _known(kind: str) -> None:
    if kind not in MODELS:
        raise GadflowError(f"unknown model '{kind}'; known: {', '.join(sorted(MODELS))}")
