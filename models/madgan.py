"""MAD-GAN (Li et al. 2019): an LSTM GAN over sliding windows of a multivariate series.

Inputs are float windows (N, seq_len, C), already scaled by the windowing stage's transform (which
travels with the model). Networks:
    G: z (B, seq_len, latent_dim) -> LSTM -> linear -> window (B, seq_len, C)   (one latent per time step)
    D: window (B, seq_len, C) -> LSTM -> linear -> one logit per time step (B, seq_len)
Training is the non-saturating GAN game on windows of normal data. For image sequences (``frame_shape``
set: each time step is a flattened (C, H, W) frame) a small CNN per frame sits between the pixels and
the LSTMs (``models.frame_nets``); everything else is the same.

Score (the DR-score): λ·discrimination + (1 − λ)·reconstruction, both per window:
- discrimination = 1 − mean_t sigmoid(D(x)_t), how fake D finds the window;
- reconstruction = mean over S restarts of the final ‖G(z) − x‖² / (seq_len·C) of a latent inversion by
  the project's one latent-search engine (``models.latent_search``), generator frozen.
The two terms live on different scales, so each is standardised by its mean and standard deviation on
a seeded subset of the *training* windows, measured once after training and saved with the model.
Per-channel residuals |x − G(z*)| of the best restart rank the sensors behind an anomaly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .adversarial import AdversarialDetector, EncoderGANConfig
from .base import evaluating
from .device import derived_generator
from .errors import GadflowError
from .frame_nets import FrameLSTMDiscriminator, FrameLSTMGenerator, check_frame_shape
from .latent_search import LatentSearch, LatentSearchConfig, frozen, initial_latents, sample_keys

NORMALISER_STREAM = 10_004  # derived_generator stream choosing the training windows the score terms are standardised on


@dataclass
class MADGANConfig(EncoderGANConfig):
    latent_dim: int = 15  # per time step (the paper's 15)
    hidden_dim: int = 100  # LSTM units of G and D (the paper's 100)
    num_layers: int = 1
    dr_lambda: float = 0.5  # λ: weight of the discrimination term; 1 − λ weighs the reconstruction
    n_seeds: int = 3  # latent search: restarts per window
    steps: int = 20  # latent search: Adam steps per restart
    lr_z: float = 5e-2
    search_seed: int = 0
    memory_budget_mb: float = 1024.0
    max_pairs_per_chunk: int = 768
    normaliser_windows: int = 512  # training windows the two score terms are standardised on
    frame_shape: tuple[int, ...] | None = None  # image sequences: each time step is a (C, H, W) frame, CNNs feed the LSTMs

    scoring_fields = ("dr_lambda", "n_seeds", "steps", "lr_z", "search_seed", "memory_budget_mb", "max_pairs_per_chunk", "normaliser_windows")

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.input_shape) != 2:
            raise GadflowError(f"madgan takes windows (seq_len, channels); this data has sample shape {self.input_shape}")
        if self.frame_shape is not None:
            self.frame_shape = tuple(int(v) for v in self.frame_shape)
            check_frame_shape(self.frame_shape, self.input_shape[1])
        if not 0.0 <= self.dr_lambda <= 1.0:
            raise GadflowError(f"dr_lambda must be in [0, 1], got {self.dr_lambda}")

    @property
    def search(self) -> LatentSearchConfig:
        return LatentSearchConfig(n_seeds=self.n_seeds, steps=self.steps, lr_z=self.lr_z, lr_theta=0.0, seed=self.search_seed,
                                  memory_budget_mb=self.memory_budget_mb, max_pairs_per_chunk=self.max_pairs_per_chunk)


class LSTMGenerator(nn.Module):
    """Flat z (B, seq_len·latent) -> window (B, seq_len, C); flat so the latent-search engine can optimise it."""

    def __init__(self, seq_len: int, channels: int, latent_dim: int, hidden_dim: int, num_layers: int) -> None:
        super().__init__()
        self.seq_len, self.latent_dim = seq_len, latent_dim
        self.lstm = nn.LSTM(latent_dim, hidden_dim, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_dim, channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        steps, _ = self.lstm(z.reshape(len(z), self.seq_len, self.latent_dim))  # (B, seq_len, hidden)
        return self.head(steps)  # (B, seq_len, C)


class LSTMDiscriminator(nn.Module):
    """Window (B, seq_len, C) -> one logit per time step (B, seq_len)."""

    def __init__(self, channels: int, hidden_dim: int, num_layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(channels, hidden_dim, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps, _ = self.lstm(x)  # (B, seq_len, hidden)
        return self.head(steps).squeeze(-1)  # (B, seq_len)


class ScoreNormaliser(nn.Module):
    """Mean and standard deviation of (discrimination, reconstruction) on training windows: buffers, so
    they are saved, fingerprinted and loaded with the weights."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(2))
        self.register_buffer("std", torch.ones(2))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))


def window_mse(generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(M, seq_len, C), (M, seq_len, C) -> (M,) mean squared error per window."""
    return (generated - target).pow(2).flatten(1).mean(1)


class MADGANDetector(AdversarialDetector):
    kind = "madgan"
    config_cls = MADGANConfig
    input_kinds = ("sequence",)

    def build_networks(self) -> None:
        cfg = self.config
        seq_len, channels = cfg.input_shape
        if cfg.frame_shape is None:
            self.generator = LSTMGenerator(seq_len, channels, cfg.latent_dim, cfg.hidden_dim, cfg.num_layers)
            self.discriminator = LSTMDiscriminator(channels, cfg.hidden_dim, cfg.num_layers)
        else:  # image sequences: a CNN per frame between the pixels and the LSTMs (models.frame_nets)
            self.generator = FrameLSTMGenerator(seq_len, cfg.frame_shape, cfg.latent_dim, cfg.hidden_dim, cfg.num_layers, cfg.base_channels)
            self.discriminator = FrameLSTMDiscriminator(cfg.frame_shape, cfg.hidden_dim, cfg.num_layers, cfg.base_channels)
        self.normaliser = ScoreNormaliser()

    def networks(self):
        return {"generator": self.generator, "discriminator": self.discriminator, "normaliser": self.normaliser}

    @property
    def noise_dim(self) -> int:
        return self.config.input_shape[0] * self.config.latent_dim  # seq_len · latent_dim

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"d": self.adam(self.discriminator, lr=self.config.lr_d), "g": self.adam(self.generator, lr=self.config.lr_g)}

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)

    def train_step(self, real, gen, optimizers):
        fake = self.generator(self.noise(len(real), gen))  # (B, seq_len, C)
        ones = torch.ones(real.shape[:2], device=self.device)  # (B, seq_len): D judges every time step
        zeros = torch.zeros_like(ones)

        # update D: maximise Σ_t log D(x)_t + log(1 − D(G(z))_t)
        logit_real = self.discriminator(real)
        logit_fake = self.discriminator(fake.detach())
        loss_d = F.binary_cross_entropy_with_logits(logit_real, ones) + F.binary_cross_entropy_with_logits(logit_fake, zeros)
        optimizers["d"].zero_grad(set_to_none=True)
        loss_d.backward()
        optimizers["d"].step()

        # update G (non-saturating): maximise Σ_t log D(G(z))_t
        loss_g = F.binary_cross_entropy_with_logits(self.discriminator(fake), ones)
        optimizers["g"].zero_grad(set_to_none=True)
        loss_g.backward()
        optimizers["g"].step()
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(),
                "d_real": torch.sigmoid(logit_real).mean().detach(), "d_fake": torch.sigmoid(logit_fake).mean().detach()}

    # --- training: the GAN, then the score normaliser on training windows ------------------------
    def fit(self, inputs: np.ndarray, checkpoint_dir=None, on_epoch_end=None, progress: bool = True):
        history = super().fit(inputs, checkpoint_dir=checkpoint_dir, on_epoch_end=on_epoch_end, progress=progress)
        self._fit_normaliser(inputs, progress)
        return history

    def _fit_normaliser(self, windows: np.ndarray, progress: bool) -> None:
        """Standardise both score terms on a seeded subset of the training windows (no other data)."""
        n = min(self.config.normaliser_windows, len(windows))
        pick = torch.randperm(len(windows), generator=derived_generator(self.config.seed, NORMALISER_STREAM))[:n].numpy()
        terms = self.score_terms(windows[np.sort(pick)], progress=progress)  # (n, 2)
        std = terms.std(axis=0)
        self.normaliser.mean.copy_(torch.from_numpy(terms.mean(axis=0)))
        self.normaliser.std.copy_(torch.from_numpy(np.where(std > 1e-12, std, 1.0)))
        self.normaliser.fitted.fill_(True)

    # --- scoring -------------------------------------------------------------------------------
    def discrimination(self, windows: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """1 − mean_t D(x)_t per window (N,), float64: high when D finds the window fake."""
        out = []
        with evaluating(self.networks().values()):
            for start in range(0, len(windows), batch_size):
                logits = self.discriminator(self.to_model_space(windows[start : start + batch_size]))  # (B, seq_len)
                out.append((1.0 - torch.sigmoid(logits).mean(1)).double().cpu())
        return torch.cat(out).numpy() if out else np.zeros(0)

    def reconstruct(self, windows: np.ndarray, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Latent inversion of each window: final losses (N, S) and the best restart's G(z*) (N, seq_len, C).

        Each row depends on its own window only: its restarts are keyed by the window's bytes.
        """
        engine = LatentSearch(self.generator, self.noise_dim, window_mse, self.config.search)
        chunk = engine.samples_per_chunk(self.device)
        losses, best = [], []
        s = self.config.n_seeds
        with frozen(self.generator, self.discriminator), tqdm(total=len(windows), unit="window", desc="latent search (madgan)", disable=not progress or None) as bar:
            for start in range(0, len(windows), chunk):
                batch = np.ascontiguousarray(windows[start : start + chunk], dtype=np.float32)
                x = self.to_model_space(batch)  # (b, seq_len, C)
                z0 = initial_latents(sample_keys(batch), s, self.noise_dim, self.config.search_seed).to(self.device)
                final: list[torch.Tensor] = []
                chunk_losses = engine.search(x, z0, on_step=lambda t, g: final.append(g) if t == self.config.steps else None)  # (b, S)
                generated = final[0].reshape(len(batch), s, *x.shape[1:])  # (b, S, seq_len, C)
                pick = chunk_losses.argmin(dim=1)  # the restart that reconstructs best
                best.append(generated[torch.arange(len(batch)), pick].detach().cpu().numpy())
                losses.append(chunk_losses.double().detach().cpu().numpy())
                bar.update(len(batch))
        if not losses:
            return np.zeros((0, s)), np.zeros((0, *self.input_shape), dtype=np.float32)
        return np.concatenate(losses), np.concatenate(best)

    def score_terms(self, windows: np.ndarray, progress: bool = False) -> np.ndarray:
        """Raw (discrimination, reconstruction) per window: (N, 2) float64."""
        self.check_input(windows)
        losses, _ = self.reconstruct(windows, progress=progress)
        return np.stack([self.discrimination(windows), losses.mean(axis=1)], axis=1)

    def score(self, windows: np.ndarray, batch_size: int = 512, progress: bool = False) -> np.ndarray:
        """DR-score per window (N,): λ·standardised discrimination + (1 − λ)·standardised reconstruction."""
        if not bool(self.normaliser.fitted):
            raise GadflowError("madgan scored before fit: its score normaliser is measured on the training windows after training")
        terms = (self.score_terms(windows, progress) - self.normaliser.mean.cpu().numpy()) / self.normaliser.std.cpu().numpy()
        lam = self.config.dr_lambda
        return lam * terms[:, 0] + (1 - lam) * terms[:, 1]

    def channel_residuals(self, windows: np.ndarray, progress: bool = False) -> np.ndarray:
        """|x − G(z*)| per window, time step and channel (N, seq_len, C): ranks the sensors behind an anomaly."""
        self.check_input(windows)
        _, best = self.reconstruct(windows, progress=progress)
        return np.abs(np.asarray(windows, dtype=np.float32) - best)
