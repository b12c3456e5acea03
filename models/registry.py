"""Name -> detector class, so tests and tasks can iterate over every model."""

from __future__ import annotations

from pathlib import Path

from .base import MODEL_FILE, Detector
from .checkpoint import load_checkpoint
from .dcgan_detector import DCGANDetector
from .egbad import EGBADDetector
from .errors import GadflowError
from .ganomaly import GANomalyDetector
from .latent_detectors import ADGANDetector, AnoGANDetector
from .madgan import MADGANDetector

DETECTORS: dict[str, type[Detector]] = {
    DCGANDetector.kind: DCGANDetector,
    ADGANDetector.kind: ADGANDetector,
    AnoGANDetector.kind: AnoGANDetector,
    EGBADDetector.kind: EGBADDetector,
    GANomalyDetector.kind: GANomalyDetector,
    MADGANDetector.kind: MADGANDetector,
}


def get_detector(kind: str) -> type[Detector]:
    try:
        return DETECTORS[kind]
    except KeyError:
        raise GadflowError(f"unknown model '{kind}'; known: {', '.join(sorted(DETECTORS))}") from None


def load_detector(directory: Path, device: str = "auto") -> Detector:
    """Load whichever detector ``directory/model.pt`` holds."""
    path = Path(directory) / MODEL_FILE
    payload = load_checkpoint(path)
    return get_detector(str(payload.get("kind", "?"))).from_payload(payload, path, device)
