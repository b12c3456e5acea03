"""The detector interface every model implements: fit / score / sample / save / load.

A detector is built from its config (a ``ModelConfig``: the model's settings, as params.yaml gives them) and an
``InputSpec`` (what one sample is: the data decide it, not the params). Inputs are
- images: uint8 (N, C, H, W) as stored by the prepare stage; the fixed preprocessing uint8 [0, 255] -> float
  [-1, 1] is part of the model;
- tabular: float (N, D) features, already scaled by the prepare stage's preprocessor (which travels with the model);
- windows: float (N, seq_len, C) of a series, already scaled by its transform (which travels with the model).
Scores: higher = more anomalous.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from .device import pick_device
from .errors import GadflowError
from .inputs import InputKind, InputSpec
from .settings import Settings, SettingsError
from .storage import atomic_torch_save, load_checkpoint
from .windowing import WindowStack

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
DEVICES = ("auto", "cpu", "cuda")  # and "cuda:N"


@dataclass(frozen=True)
class ModelConfig(Settings):
    """Fields every model config has; ``kind`` is the registry name (a Literal in each subclass)."""

    kind: str = ""
    device: str = "auto"  # 'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'

    def check(self) -> None:
        if not (self.device in DEVICES or (self.device.startswith("cuda:") and self.device[5:].isdigit())):
            raise SettingsError(f"device: 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")


@dataclass(frozen=True)
class Capabilities:
    """What a model can do, for the steps that must know (read through ``models.registry``)."""

    input_kinds: tuple[InputKind, ...]  # the InputSpec kinds it takes
    generator: bool = True  # draws samples (``sample``): Monte Carlo threshold, sample grids, checkpointed adversarial training
    reference: bool = False  # a detector without a GAN (models.reference): every report on the same data states its AUROC beside its own
    monte_carlo_labels: bool = True  # its generated samples' scores can label what the pipeline labels (not so for window models: points are labelled)
    search_loss_score: bool = False  # the score is the mean final latent-search loss: the report checks the search's convergence and draws it
    anomaly_maps: bool = False  # ``anomaly_maps(images)`` gives reconstructions and per-pixel residuals
    channel_residuals: bool = False  # ``channel_residuals(windows)`` ranks the channels behind a window's score


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


class FittedArrays(nn.Module):
    """Named arrays fitted on the training normals, as buffers (their shapes come from the data, so loading
    registers whatever the saved state holds instead of requiring buffers of fixed shapes)."""

    def put(self, **arrays: np.ndarray) -> None:
        for name, array in arrays.items():
            self.register_buffer(name, torch.as_tensor(np.ascontiguousarray(array)))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        for key, value in state_dict.items():
            if key.startswith(prefix):
                self.register_buffer(key[len(prefix):], value.detach().clone())


class Detector:
    """Base class: owns the device, the input check, the eval/no_grad bracket, batching and persistence.

    A subclass sets ``config_cls`` and ``capabilities``, builds its networks in ``__init__`` and implements
    ``networks``, ``fit`` and ``_score_batch`` (model-space batch -> (B,) scores) or ``score`` itself.
    """

    config_cls: ClassVar[type[ModelConfig]]
    capabilities: ClassVar[Capabilities]
    kind: ClassVar[str]  # the registry name: the ``kind`` default of config_cls

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "config_cls" in cls.__dict__:
            cls.kind = cls.config_cls.__dataclass_fields__["kind"].default

    def __init__(self, config: ModelConfig, inputs: InputSpec) -> None:
        if inputs.kind not in self.capabilities.input_kinds:
            raise GadflowError(f"model '{self.kind}' takes {' or '.join(self.capabilities.input_kinds)} inputs; this data gives {inputs.kind} samples {inputs.shape}")
        self.config = config
        self.inputs = inputs
        self.device = pick_device(config.device)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.inputs.shape

    @property
    def is_image(self) -> bool:
        return self.inputs.kind == "image"

    @property
    def input_dtype(self) -> np.dtype:
        """What inputs are stored as: uint8 pixels or float32 values."""
        return np.dtype(np.uint8 if self.is_image else np.float32)

    def to_model_space(self, batch: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Images: uint8 -> float32 [-1, 1]; features and windows: float -> float32, unchanged. On the model's device."""
        if self.is_image:
            return to_model_space(batch, self.device)
        x = batch if torch.is_tensor(batch) else torch.from_numpy(np.array(batch, dtype=np.float32))
        return x.to(device=self.device, dtype=torch.float32)

    # --- what subclasses provide -------------------------------------------------------
    def networks(self) -> dict[str, nn.Module]:
        """Every module saved in model.pt (and fingerprinted by model_id)."""
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
            raise GadflowError(f"{self.inputs.kind} input must be floating-point values, got dtype {inputs.dtype}")
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

    def score(self, inputs: np.ndarray, batch_size: int = 512, progress: bool = False) -> np.ndarray:
        """(N, ...) inputs -> float64 scores (N,); each score depends on its own sample only."""
        from tqdm.auto import tqdm

        self.check_input(inputs)
        out = []
        with evaluating(self.networks().values()):
            for start in tqdm(range(0, len(inputs), batch_size), desc=f"score {self.kind}", unit="batch", disable=not progress or None):
                x = self.to_model_space(inputs[start : start + batch_size])
                out.append(self._score_batch(x).double().cpu())
        return torch.cat(out).numpy() if out else np.zeros(0)

    def save(self, directory: Path) -> Path:
        """Write ``model.pt``: kind, config and inputs (JSON), model_id and every network's state_dict."""
        payload = {
            "kind": self.kind,
            "config": self.config.to_json(),
            "inputs": self.inputs.to_json(),
            "model_id": self.model_id,
            "state": {name: net.state_dict() for name, net in self.networks().items()},
        }
        return atomic_torch_save(Path(directory) / MODEL_FILE, payload)

    @classmethod
    def from_payload(cls, payload: dict[str, Any], path: Path, device: str = "auto") -> "Detector":
        if payload.get("kind") != cls.kind:
            raise GadflowError(f"{path}: is a '{payload.get('kind')}' model, not '{cls.kind}'")
        try:
            config = cls.config_cls.from_dict({**json.loads(payload["config"]), "device": device})
            inputs = InputSpec.from_dict(json.loads(payload["inputs"]))
        except (KeyError, json.JSONDecodeError, SettingsError) as exc:
            raise GadflowError(f"{path}: not a model file of this version ({type(exc).__name__}: {exc})") from None
        detector = cls(config, inputs)
        for name, net in detector.networks().items():
            net.load_state_dict(payload["state"][name])
        if detector.model_id != payload["model_id"]:
            raise GadflowError(f"{path}: weights do not match their recorded model_id (corrupt file?)")
        return detector

    @classmethod
    def load(cls, directory: Path, device: str = "auto") -> "Detector":
        path = Path(directory) / MODEL_FILE
        return cls.from_payload(load_checkpoint(path), path, device)

