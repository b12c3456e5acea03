"""Detectors that score by latent search over a trained DCGAN generator (``models.latent_search``).

- ADGAN (Deecke et al. 2018): S seeded restarts, k Adam steps on z (lr_z) and on a private copy of
  the generator's parameters θ (lr_θ), loss MSE; score = mean over restarts of the final loss.
- AnoGAN (Schlegl et al. 2017): the same search with θ frozen and the loss
  (1 − λ)·Σ|x − G(z)| + λ·Σ|f(x) − f(G(z))|, f = the discriminator's last conv features.

Both train exactly like the DCGAN detector (same networks, same trainer, shared checkpoints); only the score differs.

Optional encoder warm start (``warm_start``): after the GAN is trained, an encoder E is fitted on the
generator's own samples to invert it, minimising ‖E(G(z)) − z‖² over z ~ N(0, I) (no real data is
used). Restart 0 of every search then starts from z₀ = E(x) instead of a random draw; the other restarts
are unchanged, and the engine is the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from .base import Capabilities, to_model_space, to_uint8
from .dcgan import DCGANDetector, DCGANTrainingSettings
from .dcgan_nets import ConvEncoder
from .device import Stream, derived_generator
from .latent_search import FrozenGeneratorSearch, LatentSearchConfig, LatentSearchScorer, PerSampleLoss, frozen
from .selection import EpochSelection
from .settings import Settings, SettingsError, nested, setting


@dataclass(frozen=True)
class WarmStartConfig(Settings):
    """The encoder that starts restart 0 at z₀ = E(x): fitted to invert G on G's own samples."""

    steps: int = setting(2000, ge=1, le=1_000_000)  # Adam steps (batch 128, lr 1e-3)


@dataclass(frozen=True)
class LatentGANConfig(DCGANTrainingSettings):
    search: LatentSearchConfig = nested(LatentSearchConfig)
    warm_start: WarmStartConfig | None = None  # None: every restart starts at a seeded random z
    # The last epoch: a latent search per sample after every epoch would cost more than training, and the
    # warm-start encoder it may need is fitted after training. The search budget has its own label-free check.
    selection: EpochSelection = nested(lambda: EpochSelection(epoch="last"))

    def check(self) -> None:
        super().check()
        if self.selection.epoch != "last":
            raise SettingsError(f"selection: {self.kind} keeps the last epoch (epoch: last): scoring by latent search after every epoch costs more than training")


@dataclass(frozen=True)
class ADGANConfig(LatentGANConfig):
    kind: Literal["adgan"] = "adgan"


@dataclass(frozen=True)
class AnoGANConfig(LatentGANConfig):
    kind: Literal["anogan"] = "anogan"
    search: FrozenGeneratorSearch = nested(FrozenGeneratorSearch)
    feature_weight: float = setting(0.1, ge=0.0, le=1.0)  # λ: weight of the discrimination (feature-matching) term

    def check(self) -> None:
        super().check()
        if self.search.lr_theta != 0:
            raise SettingsError(f"search: anogan keeps the generator frozen, so lr_theta must be 0 (got {self.search.lr_theta})")


def mse_loss(generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(M, C, H, W), (M, C, H, W) -> (M,) mean squared error per sample."""
    return (generated - target).pow(2).flatten(1).mean(1)


class LatentGANDetector(DCGANDetector):
    """DCGAN training; score(x) = mean over restarts of the final latent-search loss."""

    capabilities = Capabilities(input_kinds=("image",), search_loss_score=True)
    tunes_generator: ClassVar[bool] = False  # the search also updates a private copy of θ (ADGAN)

    def __init__(self, config: LatentGANConfig, inputs) -> None:
        self.encoder: ConvEncoder | None = None  # built after the GAN, from its own seed: the GAN's weights stay the same
        super().__init__(config, inputs)
        if config.warm_start is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.search.seed + Stream.ENCODER)
                self.encoder = ConvEncoder(self.shape, config.network.latent_dim).to(self.device)

    def networks(self):
        nets = {"generator": self.generator, "discriminator": self.discriminator}
        return {**nets, "encoder": self.encoder} if self.encoder is not None else nets

    def trained_networks(self):
        return {"generator": self.generator, "discriminator": self.discriminator}

    def after_training(self, inputs: np.ndarray, progress: bool) -> None:
        """With the warm start on: minimise ‖E(G(z)) − z‖² over z ~ N(0, I); E learns to invert G on G's own samples."""
        if self.encoder is None:
            return
        gen = derived_generator(self.config.search.seed, Stream.ENCODER)
        opt = torch.optim.Adam(self.encoder.parameters(), lr=1e-3, betas=(0.9, 0.999))
        self.encoder.train()
        latent = self.config.network.latent_dim
        with frozen(self.generator), tqdm(range(self.config.warm_start.steps), desc="encoder for warm starts", unit="step", leave=False, disable=not progress or None) as bar:
            for _ in bar:
                z = torch.randn(128, latent, generator=gen).to(self.device)  # (128, latent)
                with torch.no_grad():
                    x = to_model_space(to_uint8(self.generator(z)), self.device)  # quantised like real inputs
                loss = (self.encoder(x) - z).pow(2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                bar.set_postfix(loss=f"{loss.item():.4f}")
        self.encoder.eval()

    # --- scoring ----------------------------------------------------------------------------
    def loss_fn(self) -> PerSampleLoss:
        raise NotImplementedError

    def search_targets(self, x: torch.Tensor) -> torch.Tensor:
        """What the loss compares each generated sample with; (B, ...) per target. Default: x itself."""
        return x

    def scorer(self) -> LatentSearchScorer:
        return LatentSearchScorer(self.generator, self.config.network.latent_dim, self.loss_fn(), self.config.search,
                                  to_model_space=self.to_model_space, input_dtype=self.input_dtype,
                                  frozen_modules=[m for m in (self.generator, self.discriminator, self.encoder) if m is not None],
                                  targets=self.search_targets, warm_start=self.encoder, name=f"latent search ({self.kind})")

    def search_losses(self, images: np.ndarray, progress: bool = False) -> np.ndarray:
        """uint8 (N, C, H, W) -> final losses (N, S), float64; each row depends on its own sample only."""
        self.check_input(images)
        return self.scorer().losses(images, progress=progress)

    def search_trajectory(self, image: np.ndarray, lr_theta: float) -> np.ndarray:
        """uint8 (1, C, H, W) -> G(z_t) for t = 0..k of the first restart at this lr_θ: uint8 (k+1, C, H, W)."""
        self.check_input(image)
        return self.scorer().trajectory(image, lr_theta, to_uint8)

    def score(self, images: np.ndarray, batch_size: int = 0, progress: bool = False) -> np.ndarray:
        """Mean over restarts of the final search loss; ``batch_size`` is unused (the memory budget decides)."""
        return self.search_losses(images, progress=progress).mean(axis=1)


class ADGANDetector(LatentGANDetector):
    config_cls = ADGANConfig
    tunes_generator = True

    def loss_fn(self) -> PerSampleLoss:
        return mse_loss


class AnoGANDetector(LatentGANDetector):
    config_cls = AnoGANConfig

    def search_targets(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C*H*W + F): the flattened image followed by its discriminator features f(x)."""
        return torch.cat([x.flatten(1), self.discriminator.features(x)], dim=1)

    def loss_fn(self) -> PerSampleLoss:
        lam, n_pixels, features = self.config.feature_weight, int(np.prod(self.input_shape)), self.discriminator.features

        def anogan_loss(generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            # (1 - λ)·residual + λ·discrimination, per sample: (M, C, H, W), (M, CHW + F) -> (M,)
            residual = (generated.flatten(1) - target[:, :n_pixels]).abs().sum(1)
            discrimination = (features(generated) - target[:, n_pixels:]).abs().sum(1)
            return (1 - lam) * residual + lam * discrimination

        return anogan_loss
