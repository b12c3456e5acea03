"""The detector interface every model implements: fit / score / sample / save / load.

Inputs are either uint8 images (N, C, H, W) as stored by the prepare stage, with the fixed
preprocessing uint8 [0, 255] -> float [-1, 1] part of the model, or tabular features (N, D) as
floats, already scaled by the prepare stage's preprocessor (which travels with the model folder).
Scores: higher = more anomalous.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from .checkpoint import atomic_torch_save, load_checkpoint
from .device import pick_device
from .errors import GadflowError
from .windowing import WindowStack

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"


def to_model_space(images: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (B, C, H, W) in [0, 255] -> float32 (B, C, H, W) in [-1, 1] on ``device``."""
    x = images if torch.is_tensor(images) else torch.from_numpy(np.array(images, dtype=np.uint8))  # owned copy
    return x.to(device=device, dtype=torch.float32).div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (B, C, H, W) in [-1, 1] -> uint8 (B, C, H, W) in [0, 255] (rounded, clipped)."""
    return ((x.detach().cpu().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).numpy()


def state_fingerprint(*modules: nn.Module) -> str:
    """sha256 over every parameter and buffer, in order: identifies one trained model."""
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in module.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@contextmanager
def evaluating(modules: Iterable[nn.Module]) -> Iterator[None]:
    """eval() and no_grad for the duration; every module's train/eval mode is restored afterwards."""
    modules = list(modules)
    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        with torch.no_grad():
            yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


class Detector:
    """Base class: owns the device, the eval/no_grad bracket, batching and persistence.

    A subclass sets ``kind`` and ``config_cls``, builds its networks in ``__init__`` and
    implements ``fit``, ``_score_batch`` (model-space batch -> (B,) scores) and ``sample``.
    ``input_kinds`` says which inputs it takes: "image" (uint8 (N, C, H, W)) and/or "tabular" (float (N, D)).
    """

    kind: ClassVar[str]
    config_cls: ClassVar[type]
    input_kinds: ClassVar[tuple[str, ...]] = ("image",)

    def __init__(self, config: Any) -> None:
        self.config = config
        self.device = pick_device(getattr(config, "device", "auto"))

    @classmethod
    def config_for(cls, input_shape: tuple[int, ...], **fields: Any) -> Any:
        """The config for data of ``input_shape`` ((C, H, W) or (D,)) plus the params' fields."""
        if len(input_shape) != 3:
            raise GadflowError(f"model '{cls.kind}' takes images (C, H, W); this data has shape {tuple(input_shape)}")
        return cls.config_cls(channels=int(input_shape[0]), size=int(input_shape[1]), **fields)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) of the images, or (D,) of the tabular features, this model scores."""
        return (self.config.channels, self.config.size, self.config.size)

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3

    def to_model_space(self, batch: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Images: uint8 -> float32 [-1, 1]; tabular: float -> float32, unchanged. On the model's device."""
        if self.is_image:
            return to_model_space(batch, self.device)
        x = batch if torch.is_tensor(batch) else torch.from_numpy(np.array(batch, dtype=np.float32))
        return x.to(device=self.device, dtype=torch.float32)

    # --- what subclasses provide -------------------------------------------------------
    def networks(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # --- shared behaviour ------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return state_fingerprint(*self.networks().values())

    def check_input(self, inputs: np.ndarray) -> None:
        expected = self.input_shape
        if self.is_image and inputs.dtype != np.uint8:
            raise GadflowError(f"input images must be uint8 pixels in [0, 255], got dtype {inputs.dtype}")
        if not self.is_image and not np.issubdtype(inputs.dtype, np.floating):
            raise GadflowError(f"tabular input must be floating-point features, got dtype {inputs.dtype}")
        if inputs.ndim != len(expected) + 1 or tuple(inputs.shape[1:]) != expected:
            raise GadflowError(f"input of shape {tuple(inputs.shape)} does not match the model's (N, {', '.join(map(str, expected))})")
        if self.is_image:
            return
        if isinstance(inputs, WindowStack):  # checked on its series, each point once: no window is gathered
            bad = inputs.first_nonfinite()
        else:
            finite = np.isfinite(inputs).all(axis=tuple(range(1, inputs.ndim)))  # (N,); an empty input has no bad row
            bad = None if finite.all() else int(np.flatnonzero(~finite)[0])
        if bad is not None:
            raise GadflowError(f"input sample {bad} has a NaN or infinite value")

    def score(self, images: np.ndarray, batch_size: int = 512, progress: bool = False) -> np.ndarray:
        """uint8 (N, C, H, W) or float (N, D) -> float64 scores (N,); each score depends on its own sample only."""
        from tqdm.auto import tqdm

        self.check_input(images)
        out = []
        with evaluating(self.networks().values()):
            for start in tqdm(range(0, len(images), batch_size), desc=f"score {self.kind}", unit="batch", disable=not progress or None):
                x = self.to_model_space(images[start : start + batch_size])
                out.append(self._score_batch(x).double().cpu())
        return torch.cat(out).numpy() if out else np.zeros(0)

    def save(self, directory: Path) -> Path:
        """Write ``model.pt``: kind, config (JSON), model_id and every network's state_dict."""
        payload = {
            "kind": self.kind,
            "config": json.dumps(dataclasses.asdict(self.config)),
            "model_id": self.model_id,
            "state": {name: net.state_dict() for name, net in self.networks().items()},
        }
        return atomic_torch_save(Path(directory) / MODEL_FILE, payload)

    @classmethod
    def load(cls, directory: Path, device: str = "auto") -> "Detector":
        path = Path(directory) / MODEL_FILE
        return cls.from_payload(load_checkpoint(path), path, device)

    @classmethod
    def from_payload(cls, payload: dict[str, Any], path: Path, device: str = "auto") -> "Detector":
        if payload.get("kind") != cls.kind:
            raise GadflowError(f"{path}: is a '{payload.get('kind')}' model, not '{cls.kind}'")
        fields = json.loads(payload["config"])
        fields["device"] = device
        detector = cls(cls.config_cls(**fields))
        for name, net in detector.networks().items():
            net.load_state_dict(payload["state"][name])
        if detector.model_id != payload["model_id"]:
            raise GadflowError(f"{path}: weights do not match their recorded model_id (corrupt file?)")
        return detector
