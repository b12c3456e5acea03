"""Detectors that score by latent search over a trained DCGAN generator.

- ADGAN (Deecke et al. 2018): S seeded restarts, k Adam steps on z (lr_z) and on a private copy of
  the generator's parameters θ (lr_θ), loss MSE; score = mean over restarts of the final loss.
- AnoGAN (Schlegl et al. 2017): the same search with θ frozen and the loss
  (1 − λ)·Σ|x − G(z)| + λ·Σ|f(x) − f(G(z))|, f = the discriminator's last conv features.

Both train exactly like the DCGAN detector (same networks, same resumable loop); only the score differs.

Optional encoder warm start (``encoder_warm_start``): after the GAN is trained, an encoder E is fitted on
the generator's own samples to invert it, minimising ‖E(G(z)) − z‖² over z ~ N(0, I) (no real data is
used). Restart 0 of every search then starts from z₀ = E(x) instead of a random draw; the other restarts
are unchanged, and the engine is the same.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from tqdm.auto import tqdm

from .base import to_model_space, to_uint8
from .dcgan import ConvEncoder
from .dcgan_detector import DCGANConfig, DCGANDetector
from .device import derived_generator
from .errors import GadflowError
from .latent_search import LatentSearch, LatentSearchConfig, PerSampleLoss, frozen, initial_latents, sample_keys


ENCODER_STREAM = 10_003  # derived_generator stream of the warm-start encoder's init and training noise


@dataclass
class LatentSearchDetectorConfig(DCGANConfig):
    n_seeds: int = 3
    steps: int = 19
    lr_z: float = 5e-2
    lr_theta: float = 6e-9
    memory_budget_mb: float = 1024.0
    search_seed: int = 0
    max_pairs_per_chunk: int = 768
    max_pairs_per_chunk_theta: int = 48
    channels_last: bool = False  # fast path only; see LatentSearchConfig
    anogan_lambda: float = 0.1  # AnoGAN only: weight of the discrimination term
    encoder_warm_start: bool = False  # restart 0 starts from E(x), E fitted to invert G on its own samples
    encoder_steps: int = 2000  # Adam steps (batch 128, lr 1e-3) of that fit

    @property
    def search(self) -> LatentSearchConfig:
        """The engine's config, field by field (its `seed` is our `search_seed`; `seed` trains the GAN)."""
        return LatentSearchConfig(**{f.name: getattr(self, "search_seed" if f.name == "seed" else f.name) for f in fields(LatentSearchConfig)})


def mse_loss(generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(M, C, H, W), (M, C, H, W) -> (M,) mean squared error per sample."""
    return (generated - target).pow(2).flatten(1).mean(1)


class LatentSearchDetector(DCGANDetector):
    """DCGAN training; score(x) = mean over restarts of the final latent-search loss."""

    config_cls = LatentSearchDetectorConfig
    tunes_generator = False

    def __init__(self, config: LatentSearchDetectorConfig) -> None:
        super().__init__(config)
        self.encoder: ConvEncoder | None = None
        if config.encoder_warm_start:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.search_seed + ENCODER_STREAM)
                self.encoder = ConvEncoder(config.shape, config.latent_dim).to(self.device)

    def networks(self):
        nets = super().networks()
        return {**nets, "encoder": self.encoder} if self.encoder is not None else nets

    def fit(self, images: np.ndarray, checkpoint_dir=None, on_epoch_end=None, progress: bool = True):
        """Train the GAN (resumable, as the DCGAN detector); then, with the warm start on, fit the encoder."""
        history = super().fit(images, checkpoint_dir=checkpoint_dir, on_epoch_end=on_epoch_end, progress=progress)
        if self.encoder is not None:
            self._fit_encoder(progress)
        return history

    def _fit_encoder(self, progress: bool) -> None:
        """minimise ‖E(G(z)) − z‖² over z ~ N(0, I): E learns to invert G on G's own samples (no real data)."""
        gen = derived_generator(self.config.search_seed, ENCODER_STREAM)
        opt = torch.optim.Adam(self.encoder.parameters(), lr=1e-3, betas=(0.9, 0.999))
        self.encoder.train()
        with frozen(self.generator), tqdm(range(self.config.encoder_steps), desc="encoder for warm starts", unit="step", leave=False, disable=not progress or None) as bar:
            for _ in bar:
                z = torch.randn(128, self.config.latent_dim, generator=gen).to(self.device)  # (128, latent)
                with torch.no_grad():
                    x = to_model_space(to_uint8(self.generator(z)), self.device)  # quantised like real inputs
                loss = (self.encoder(x) - z).pow(2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                bar.set_postfix(loss=f"{loss.item():.4f}")
        self.encoder.eval()

    def loss_fn(self) -> PerSampleLoss:
        raise NotImplementedError

    def search_targets(self, x: torch.Tensor) -> torch.Tensor:
        """What the loss compares each generated sample with; (B, ...) per target. Default: x itself."""
        return x

    def engine(self) -> LatentSearch:
        return LatentSearch(self.generator, self.config.latent_dim, self.loss_fn(), self.config.search)

    def _search_inputs(self, images: np.ndarray, n_seeds: int) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (B, C, H, W) -> loss targets (B, ...) and restarts z0 (B, S, latent) on the device."""
        x = to_model_space(images, self.device)  # (B, C, H, W) in [-1, 1]
        with torch.no_grad():
            targets = self.search_targets(x)
        z0 = initial_latents(sample_keys(images), n_seeds, self.config.latent_dim, self.config.search_seed).to(self.device)
        if self.encoder is not None:  # warm start: restart 0 begins at E(x)
            with torch.no_grad(), frozen(self.encoder):
                z0[:, 0] = self.encoder(x)
        return targets, z0

    def search_losses(self, images: np.ndarray, progress: bool = False) -> np.ndarray:
        """uint8 (N, C, H, W) -> final losses (N, S), float64; each row depends on its own sample only."""
        self.check_input(images)
        engine = self.engine()
        chunk = engine.samples_per_chunk(self.device)
        out = []
        with frozen(self.generator, self.discriminator), tqdm(total=len(images), unit="sample", desc=f"latent search ({self.kind})", disable=not progress or None) as bar:
            for start in range(0, len(images), chunk):
                batch = images[start : start + chunk]
                out.append(engine.search(*self._search_inputs(batch, self.config.n_seeds)).double().cpu())
                bar.update(len(batch))
        return torch.cat(out).numpy() if out else np.zeros((0, self.config.n_seeds))

    def search_trajectory(self, image: np.ndarray, lr_theta: float) -> np.ndarray:
        """uint8 (1, C, H, W) -> G(z_t) for t = 0..k of the first restart at this lr_θ: uint8 (k+1, C, H, W)."""
        self.check_input(image)
        frames: list[np.ndarray] = []
        config = replace(self.config.search, n_seeds=1, lr_theta=lr_theta)
        engine = LatentSearch(self.generator, self.config.latent_dim, self.loss_fn(), config)
        with frozen(self.generator, self.discriminator):
            targets, z0 = self._search_inputs(image, n_seeds=1)
            engine.search(targets, z0, on_step=lambda t, generated: frames.append(to_uint8(generated[:1])))
        return np.concatenate(frames)

    def score(self, images: np.ndarray, batch_size: int = 0, progress: bool = False) -> np.ndarray:
        """Mean over restarts of the final search loss; ``batch_size`` is unused (memory budget decides)."""
        return self.search_losses(images, progress=progress).mean(axis=1)


class ADGANDetector(LatentSearchDetector):
    kind = "adgan"
    tunes_generator = True  # the search also updates a private copy of θ

    def loss_fn(self) -> PerSampleLoss:
        return mse_loss


class AnoGANDetector(LatentSearchDetector):
    kind = "anogan"

    def __init__(self, config: LatentSearchDetectorConfig) -> None:
        if config.lr_theta != 0:
            raise GadflowError(f"anogan keeps the generator frozen: lr_theta must be 0, got {config.lr_theta}")
        if not 0.0 <= config.anogan_lambda <= 1.0:
            raise GadflowError(f"anogan_lambda must be in [0, 1], got {config.anogan_lambda}")
        super().__init__(config)

    def search_targets(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C*H*W + F): the flattened image followed by its discriminator features f(x)."""
        return torch.cat([x.flatten(1), self.discriminator.features(x)], dim=1)

    def loss_fn(self) -> PerSampleLoss:
        lam, n_pixels, features = self.config.anogan_lambda, self.config.channels * self.config.size**2, self.discriminator.features

        def anogan_loss(generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            # (1 - λ)·residual + λ·discrimination, per sample: (M, C, H, W), (M, CHW + F) -> (M,)
            residual = (generated.flatten(1) - target[:, :n_pixels]).abs().sum(1)
            discrimination = (features(generated) - target[:, n_pixels:]).abs().sum(1)
            return (1 - lam) * residual + lam * discrimination

        return anogan_loss
