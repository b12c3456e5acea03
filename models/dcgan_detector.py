"""DCGAN anomaly detector: non-saturating GAN training, score = 1 - D(x).

Training checkpoints every epoch (weights, optimizer states, config, RNG state, history) and
resumes from the last one; every random stream is derived from (seed, epoch), so a resumed
run ends with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .base import Detector, to_model_space, to_uint8
from .checkpoint import LAST_CHECKPOINT, atomic_torch_save, checkpoint_identity, data_key, load_checkpoint
from .dcgan import DCGANShape, Discriminator, Generator
from .device import derived_generator
from .errors import GadflowError

log = logging.getLogger(__name__)

FIXED_NOISE_STREAM = 10_001  # stream ids for derived_generator: keep them distinct
SAMPLE_STREAM = 10_002


@dataclass
class DCGANConfig:
    channels: int
    size: int
    latent_dim: int = 64
    base_channels: int = 32
    epochs: int = 20
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    seed: int = 0
    device: str = "auto"
    n_fixed_samples: int = 64  # size of the fixed-noise grid recorded every epoch
    discriminator_norm: str = "batch"  # "batch" | "spectral" (see models.dcgan.Discriminator)

    @property
    def shape(self) -> DCGANShape:
        return DCGANShape(self.channels, self.size, self.latent_dim, self.base_channels, self.discriminator_norm)

    def training_key(self) -> str:
        """What a checkpoint must match to be resumed: the GAN training fields only (not the device,
        nor the scoring settings a subclass adds, so changing those never retrains)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(DCGANConfig) if f.name != "device"}
        return json.dumps(fields, sort_keys=True)


@dataclass
class EpochRecord:
    epoch: int  # 1-based
    loss_d: float  # mean over the epoch's batches
    loss_g: float
    d_real: float  # mean D(x) on real batches
    d_fake: float  # mean D(G(z)) on fake batches, measured at the D update
    seconds: float

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


EpochCallback = Callable[[EpochRecord, np.ndarray], None]  # (record, fixed-noise samples uint8)


class DCGANDetector(Detector):
    kind = "dcgan"
    config_cls = DCGANConfig
    # How the networks are trained. DCGAN, ADGAN and AnoGAN differ only in how they score, so a
    # checkpoint of one resumes (or, when complete, is reused by) another with the same training_key.
    trained_as = "dcgan"

    def __init__(self, config: DCGANConfig) -> None:
        super().__init__(config)
        with torch.random.fork_rng(devices=[]):  # initial weights depend on the seed only
            torch.manual_seed(config.seed)
            self.generator = Generator(config.shape).to(self.device)
            self.discriminator = Discriminator(config.shape).to(self.device)
        self.history: list[EpochRecord] = []

    def networks(self):
        return {"generator": self.generator, "discriminator": self.discriminator}

    # --- scoring --------------------------------------------------------------------------
    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(-self.discriminator(x))  # 1 - D(x), (B,)

    @torch.no_grad()
    def sample(self, n: int, seed: int, batch_size: int = 1024) -> np.ndarray:
        """n generated images as uint8 (n, C, H, W), quantised like real inputs.

        Deterministic for a given (seed, batch_size): the noise is drawn batch by batch.
        """
        gen = derived_generator(seed, SAMPLE_STREAM)
        was_training = self.generator.training
        self.generator.eval()
        out = []
        try:
            for start in range(0, n, batch_size):
                z = torch.randn(min(batch_size, n - start), self.config.latent_dim, generator=gen)
                out.append(to_uint8(self.generator(z.to(self.device))))
        finally:
            self.generator.train(was_training)
        return np.concatenate(out) if out else np.zeros((0, self.config.channels, self.config.size, self.config.size), np.uint8)

    # --- training -------------------------------------------------------------------------
    def fit(
        self,
        images: np.ndarray,
        checkpoint_dir: Path | None = None,
        on_epoch_end: EpochCallback | None = None,
        progress: bool = True,
    ) -> list[EpochRecord]:
        """Train on normal uint8 images (N, C, H, W); resume from ``checkpoint_dir`` if it holds a match.

        Calling fit again on the same object continues from its current weights (a warm start).
        """
        self.check_input(images)
        if len(images) < 2:
            raise GadflowError(f"need at least 2 training images, got {len(images)}")
        cfg = self.config
        data = torch.from_numpy(np.array(images, dtype=np.uint8, copy=True))  # uint8 (N, C, H, W), CPU, owned
        key = data_key(data.numpy())
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, 0.999))
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, 0.999))
        start_epoch = self._resume(checkpoint_dir, opt_g, opt_d, key)
        fixed_z = torch.randn(cfg.n_fixed_samples, cfg.latent_dim, generator=derived_generator(cfg.seed, FIXED_NOISE_STREAM))

        for epoch in range(start_epoch, cfg.epochs):
            record = self._train_epoch(data, epoch, opt_g, opt_d, progress)
            self.history.append(record)
            if checkpoint_dir is not None:
                self._save_checkpoint(Path(checkpoint_dir), epoch + 1, opt_g, opt_d, key)
            log.info(
                "epoch %d/%d  loss_D %.4f  loss_G %.4f  D(x) %.3f  D(G(z)) %.3f  %.1fs",
                record.epoch, cfg.epochs, record.loss_d, record.loss_g, record.d_real, record.d_fake, record.seconds,
            )
            if on_epoch_end is not None:
                on_epoch_end(record, self._fixed_samples(fixed_z))
        self.generator.eval()
        self.discriminator.eval()
        return self.history

    def _train_epoch(self, data: torch.Tensor, epoch: int, opt_g, opt_d, progress: bool) -> EpochRecord:
        import time

        cfg = self.config
        self.generator.train()
        self.discriminator.train()
        gen = derived_generator(cfg.seed, epoch)  # shuffling and noise of this epoch only
        order = torch.randperm(len(data), generator=gen)
        batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        if len(batches) > 1 and len(batches[-1]) < 2:
            batches.pop()  # BatchNorm cannot train on a batch of one
        sums = np.zeros(4)
        start = time.perf_counter()
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False, disable=not progress or None)
        for step, idx in enumerate(bar):
            real = to_model_space(data[idx], self.device)  # (B, C, H, W)
            z = torch.randn(len(idx), cfg.latent_dim, generator=gen).to(self.device)  # (B, latent)
            ones = torch.ones(len(idx), device=self.device)
            zeros = torch.zeros(len(idx), device=self.device)

            # update D: maximise log D(x) + log(1 - D(G(z)))
            fake = self.generator(z)
            logit_real = self.discriminator(real)
            logit_fake = self.discriminator(fake.detach())
            loss_d = F.binary_cross_entropy_with_logits(logit_real, ones) + F.binary_cross_entropy_with_logits(logit_fake, zeros)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()

            # update G (non-saturating): maximise log D(G(z))
            loss_g = F.binary_cross_entropy_with_logits(self.discriminator(fake), ones)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()

            if not (torch.isfinite(loss_d) and torch.isfinite(loss_g)):
                raise GadflowError(
                    f"non-finite loss at epoch {epoch + 1}, step {step + 1} (loss_D={loss_d.item()}, "
                    f"loss_G={loss_g.item()}); lower the learning rates. Nothing after epoch {epoch} was saved"
                )
            stats = (loss_d.item(), loss_g.item(), torch.sigmoid(logit_real).mean().item(), torch.sigmoid(logit_fake).mean().item())
            sums += stats
            bar.set_postfix(loss_D=f"{stats[0]:.3f}", loss_G=f"{stats[1]:.3f}")
        means = sums / max(len(batches), 1)
        return EpochRecord(epoch + 1, *map(float, means), seconds=time.perf_counter() - start)

    @torch.no_grad()
    def _fixed_samples(self, fixed_z: torch.Tensor) -> np.ndarray:
        self.generator.eval()
        samples = to_uint8(self.generator(fixed_z.to(self.device)))
        self.generator.train()
        return samples

    # --- checkpoints ----------------------------------------------------------------------
    def checkpoint_identity(self, key: str) -> tuple[str, str, str]:
        """What a checkpoint must carry to be resumed (or reused) by this detector, for data with ``key``."""
        return (self.trained_as, self.config.training_key(), key)

    def _save_checkpoint(self, directory: Path, epochs_done: int, opt_g, opt_d, key: str) -> None:
        atomic_torch_save(
            directory / LAST_CHECKPOINT,
            {
                "trained_as": self.trained_as,
                "training_key": self.config.training_key(),
                "data_key": key,
                "epochs_done": epochs_done,
                "generator": self.generator.state_dict(),
                "discriminator": self.discriminator.state_dict(),
                "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "history": json.dumps([dataclasses.asdict(r) for r in self.history]),
            },
        )

    def _resume(self, checkpoint_dir: Path | None, opt_g, opt_d, key: str) -> int:
        """Load the last checkpoint if it was made by this config on this data; return the next epoch."""
        if checkpoint_dir is None or not (Path(checkpoint_dir) / LAST_CHECKPOINT).exists():
            return 0
        path = Path(checkpoint_dir) / LAST_CHECKPOINT
        ckpt: dict[str, Any] = load_checkpoint(path)
        if checkpoint_identity(ckpt) != self.checkpoint_identity(key):
            log.warning("%s was made with another config or data: training from scratch", path)
            return 0
        self.generator.load_state_dict(ckpt["generator"])
        self.discriminator.load_state_dict(ckpt["discriminator"])
        opt_g.load_state_dict(ckpt["opt_g"])
        opt_d.load_state_dict(ckpt["opt_d"])
        torch.set_rng_state(ckpt["torch_rng"])
        self.history = [EpochRecord(**r) for r in json.loads(ckpt["history"])]
        log.info("resumed from %s after epoch %d of %d", path, ckpt["epochs_done"], self.config.epochs)
        return int(ckpt["epochs_done"])
