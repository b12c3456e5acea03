"""Resumable adversarial training shared by the encoder GANs (BiGAN/EGBAD, GANomaly).

A subclass builds its networks in ``build_networks``, its optimisers in ``build_optimizers`` and does
one adversarial update in ``train_step``. This base class owns the rest: the epoch loop with shuffling,
noise and dropout masks drawn from streams seeded by (seed, epoch), a checkpoint after every epoch
(weights, optimiser states, history: no RNG state is needed) and resume from it, a stop with a clear error on a non-finite
loss, progress bars, and sampling. A resumed run ends with exactly the weights of an uninterrupted one.

Inputs are uint8 images (N, C, H, W), float tabular features (N, D) or float windows (N, seq_len, C):
``config.input_shape`` says which.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from .base import Detector, evaluating, to_uint8
from .checkpoint import LAST_CHECKPOINT, atomic_torch_save, checkpoint_identity, data_key, load_checkpoint
from .device import derived_generator
from .errors import GadflowError

log = logging.getLogger(__name__)

FIXED_NOISE_STREAM = 10_001  # stream ids for derived_generator (the same ids as the DCGAN detector's)
SAMPLE_STREAM = 10_002


@dataclass
class EncoderGANConfig:
    input_shape: tuple[int, ...]  # (C, H, W) for uint8 images, (D,) for tabular features
    latent_dim: int = 64
    base_channels: int = 32  # image networks: feature maps of the widest-resolution conv layer
    hidden_dims: tuple[int, ...] = (128, 64)  # tabular networks: MLP widths, input side first
    dropout: float = 0.2  # tabular discriminators only
    epochs: int = 20
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    seed: int = 0
    device: str = "auto"
    n_fixed_samples: int = 64  # size of the fixed-noise sample set recorded every epoch

    scoring_fields: ClassVar[tuple[str, ...]] = ()  # subclass fields that change the score only, never training

    def __post_init__(self) -> None:  # JSON round trips give lists
        self.input_shape = tuple(int(v) for v in self.input_shape)
        self.hidden_dims = tuple(int(v) for v in self.hidden_dims)
        if not self.hidden_dims:
            raise GadflowError("hidden_dims: needs at least one width")

    def training_key(self) -> str:
        """What a checkpoint must match to be resumed: every field but the device and the scoring fields."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("device", *self.scoring_fields)}
        return json.dumps(fields, sort_keys=True)


@dataclass
class EpochStats:
    epoch: int  # 1-based
    seconds: float
    stats: dict[str, float]  # epoch means of what train_step reports, e.g. loss_d, loss_g

    def as_dict(self) -> dict[str, float]:
        return {"epoch": self.epoch, **self.stats, "seconds": self.seconds}


EpochCallback = Callable[[EpochStats, np.ndarray], None]  # (record, fixed-noise samples as inputs)


class AdversarialDetector(Detector):
    """Base of the encoder GANs: a resumable training loop around ``train_step``."""

    config_cls: ClassVar[type[EncoderGANConfig]]
    input_kinds = ("image", "tabular")

    def __init__(self, config: EncoderGANConfig) -> None:
        super().__init__(config)
        with torch.random.fork_rng(devices=[]):  # initial weights depend on the seed only
            torch.manual_seed(config.seed)
            self.build_networks()
        for net in self.networks().values():
            net.to(self.device)
        self.history: list[EpochStats] = []

    @classmethod
    def config_for(cls, input_shape: tuple[int, ...], **fields: Any) -> EncoderGANConfig:
        return cls.config_cls(input_shape=tuple(input_shape), **fields)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.config.input_shape

    @property
    def trained_as(self) -> str:
        return self.kind

    # --- what subclasses provide -------------------------------------------------------
    def build_networks(self) -> None:
        raise NotImplementedError

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def train_step(self, real: torch.Tensor, gen: torch.Generator, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        """One adversarial update on a model-space batch; returns scalar statistics (losses named loss_*)."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent) -> a model-space sample (B, ...)."""
        raise NotImplementedError

    # --- helpers -------------------------------------------------------------------------
    def adam(self, *modules: torch.nn.Module, lr: float) -> torch.optim.Adam:
        params = [p for m in modules for p in m.parameters()]
        return torch.optim.Adam(params, lr=lr, betas=(self.config.beta1, 0.999))

    @property
    def noise_dim(self) -> int:
        """Size of the flat latent vector ``decode`` takes (the latent dim; MAD-GAN: one latent per time step)."""
        return self.config.latent_dim

    def noise(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """(n, noise_dim) standard-normal draws from ``gen`` (CPU), on the model's device."""
        return torch.randn(n, self.noise_dim, generator=gen).to(self.device)

    def from_model_space(self, x: torch.Tensor) -> np.ndarray:
        """Model-space samples -> inputs: uint8 images (B, C, H, W) or float32 features (B, D)."""
        return to_uint8(x) if self.is_image else x.detach().cpu().numpy().astype(np.float32)

    # --- sampling --------------------------------------------------------------------------
    def sample(self, n: int, seed: int, batch_size: int = 1024) -> np.ndarray:
        """n samples decoded from z ~ N(0, I), as inputs (quantised like real images). Deterministic per (seed, batch_size)."""
        gen = derived_generator(seed, SAMPLE_STREAM)
        out = []
        with evaluating(self.networks().values()):
            for start in range(0, n, batch_size):
                out.append(self.from_model_space(self.decode(self.noise(min(batch_size, n - start), gen))))
        dtype = np.uint8 if self.is_image else np.float32
        return np.concatenate(out) if out else np.zeros((0, *self.input_shape), dtype)

    # --- training ----------------------------------------------------------------------------
    def fit(self, inputs: np.ndarray, checkpoint_dir: Path | None = None, on_epoch_end: EpochCallback | None = None, progress: bool = True) -> list[EpochStats]:
        """Train on normal inputs; resume from ``checkpoint_dir`` if it holds a checkpoint of this config and data."""
        self.check_input(inputs)
        if len(inputs) < 2:
            raise GadflowError(f"need at least 2 training samples, got {len(inputs)}")
        cfg = self.config
        # Batches are gathered from the inputs as they are needed: a memory-mapped or lazily windowed
        # split is never copied whole (uint8 images, float32 features or windows).
        data = _BatchSource(inputs, np.uint8 if self.is_image else np.float32)
        key = data_key(inputs, dtype=data.dtype)
        optimizers = self.build_optimizers()
        start_epoch = self._resume(checkpoint_dir, optimizers, key)
        fixed_z = torch.randn(cfg.n_fixed_samples, self.noise_dim, generator=derived_generator(cfg.seed, FIXED_NOISE_STREAM))
        for epoch in range(start_epoch, cfg.epochs):
            record = self._train_epoch(data, epoch, optimizers, progress)
            self.history.append(record)
            if checkpoint_dir is not None:
                self._save_checkpoint(Path(checkpoint_dir), epoch + 1, optimizers, key)
            log.info("epoch %d/%d  %s  %.1fs", record.epoch, cfg.epochs, "  ".join(f"{k} {v:.4f}" for k, v in record.stats.items()), record.seconds)
            if on_epoch_end is not None:
                on_epoch_end(record, self._decode_eval(fixed_z))
        for net in self.networks().values():
            net.eval()
        return self.history

    def _train_epoch(self, data: "_BatchSource", epoch: int, optimizers: dict[str, torch.optim.Optimizer], progress: bool) -> EpochStats:
        cfg = self.config
        for net in self.networks().values():
            net.train()
        gen = derived_generator(cfg.seed, epoch)  # shuffling and noise of this epoch only
        order = torch.randperm(len(data), generator=gen)
        batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        if len(batches) > 1 and len(batches[-1]) < 2:
            batches.pop()  # BatchNorm cannot train on a batch of one
        sums: dict[str, float] = {}
        start = time.perf_counter()
        bar = tqdm(batches, desc=f"{self.kind} epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False, disable=not progress or None)
        # Dropout draws from the global RNG: seed it from this epoch's stream, inside a fork that restores it after.
        with torch.random.fork_rng(devices=[] if self.device.type == "cpu" else None):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
            for step, idx in enumerate(bar):
                stats = {k: float(v) for k, v in self.train_step(self.to_model_space(data.batch(idx)), gen, optimizers).items()}
                bad = {k: v for k, v in stats.items() if not math.isfinite(v)}
                if bad:
                    raise GadflowError(f"non-finite loss at epoch {epoch + 1}, step {step + 1} ({bad}); lower the learning rates. Nothing after epoch {epoch} was saved")
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.set_postfix({k: f"{v:.3f}" for k, v in stats.items() if k.startswith("loss")})
        return EpochStats(epoch + 1, time.perf_counter() - start, {k: v / max(len(batches), 1) for k, v in sums.items()})

    def _decode_eval(self, z: torch.Tensor) -> np.ndarray:
        with evaluating(self.networks().values()):
            return self.from_model_space(self.decode(z.to(self.device)))

    # --- checkpoints ----------------------------------------------------------------------------
    def checkpoint_identity(self, key: str) -> tuple[str, str, str]:
        """What a checkpoint must carry to be resumed (or reused) by this detector, for data with ``key``."""
        return (self.trained_as, self.config.training_key(), key)

    def _save_checkpoint(self, directory: Path, epochs_done: int, optimizers: dict[str, torch.optim.Optimizer], key: str) -> None:
        atomic_torch_save(directory / LAST_CHECKPOINT, {
            "trained_as": self.trained_as,
            "training_key": self.config.training_key(),
            "data_key": key,
            "epochs_done": epochs_done,
            "state": {name: net.state_dict() for name, net in self.networks().items()},
            "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
            "history": json.dumps([dataclasses.asdict(r) for r in self.history]),
        })

    def _resume(self, checkpoint_dir: Path | None, optimizers: dict[str, torch.optim.Optimizer], key: str) -> int:
        """Load the last checkpoint if this config made it on this data; return the next epoch."""
        if checkpoint_dir is None or not (Path(checkpoint_dir) / LAST_CHECKPOINT).exists():
            return 0
        path = Path(checkpoint_dir) / LAST_CHECKPOINT
        ckpt = load_checkpoint(path)
        if checkpoint_identity(ckpt) != self.checkpoint_identity(key):
            log.warning("%s was made with another model, config or data: training from scratch", path)
            return 0
        for name, net in self.networks().items():
            net.load_state_dict(ckpt["state"][name])
        for name, opt in optimizers.items():
            opt.load_state_dict(ckpt["optimizers"][name])
        self.history = [EpochStats(**r) for r in json.loads(ckpt["history"])]
        log.info("resumed from %s after epoch %d of %d", path, ckpt["epochs_done"], self.config.epochs)
        return int(ckpt["epochs_done"])


class _BatchSource:
    """Training inputs read one batch at a time: ``batch(idx)`` gathers rows idx (a CPU index tensor) as a tensor."""

    def __init__(self, inputs, dtype: type) -> None:
        self.inputs, self.dtype = inputs, np.dtype(dtype)

    def __len__(self) -> int:
        return len(self.inputs)

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        rows = np.asarray(self.inputs[idx.numpy()], dtype=self.dtype)  # (B, ...) a new, writable array
        return torch.from_numpy(rows)
