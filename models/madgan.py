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
from typing import Literal

import numpy as np
import torch
from torch import nn

from .base import Capabilities, ModelConfig, evaluating
from .device import Stream, derived_generator
from .errors import GadflowError
from .frame_nets import FrameLSTMDiscriminator, FrameLSTMGenerator, check_frame_shape
from .latent_search import FrozenGeneratorSearch, LatentSearchScorer
from .settings import Settings, SettingsError, nested, setting
from .trainer import GANDetector, TrainingConfig


@dataclass(frozen=True)
class MADGANNetwork(Settings):
    """MAD-GAN's LSTMs (and, on image sequences, the per-frame CNNs)."""

    latent_dim: int = setting(15, ge=1, le=4096)  # per time step (the paper's 15)
    hidden_dim: int = setting(100, ge=1, le=4096)  # LSTM units of G and D (the paper's 100)
    num_layers: int = setting(1, ge=1, le=8)
    base_channels: int = setting(32, ge=1, le=1024)  # image sequences: the frame CNNs' width


@dataclass(frozen=True)
class MADGANConfig(ModelConfig):
    kind: Literal["madgan"] = "madgan"
    network: MADGANNetwork = nested(MADGANNetwork)
    training: TrainingConfig = nested(TrainingConfig)
    search: FrozenGeneratorSearch = nested(FrozenGeneratorSearch)  # the reconstruction's latent inversion, G frozen
    dr_lambda: float = setting(0.5, ge=0.0, le=1.0)  # λ: weight of the discrimination term; 1 − λ weighs the reconstruction
    normaliser_windows: int = setting(512, ge=2, le=1_000_000)  # training windows the two score terms are standardised on

    def check(self) -> None:
        super().check()
        if self.search.lr_theta != 0:
            raise SettingsError(f"search: madgan keeps the generator frozen, so lr_theta must be 0 (got {self.search.lr_theta})")
        if self.search.channels_last:
            raise SettingsError("search: madgan has no channels_last path (its generator is an LSTM)")


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


class MADGANDetector(GANDetector):
    config_cls = MADGANConfig
    capabilities = Capabilities(input_kinds=("window",), monte_carlo_labels=False, channel_residuals=True)

    def build_networks(self) -> None:
        net, frame_shape = self.config.network, self.inputs.frame_shape
        seq_len, channels = self.input_shape
        if frame_shape is None:
            self.generator = LSTMGenerator(seq_len, channels, net.latent_dim, net.hidden_dim, net.num_layers)
            self.discriminator = LSTMDiscriminator(channels, net.hidden_dim, net.num_layers)
        else:  # image sequences: a CNN per frame between the pixels and the LSTMs (models.frame_nets)
            check_frame_shape(frame_shape, channels)
            self.generator = FrameLSTMGenerator(seq_len, frame_shape, net.latent_dim, net.hidden_dim, net.num_layers, net.base_channels)
            self.discriminator = FrameLSTMDiscriminator(frame_shape, net.hidden_dim, net.num_layers, net.base_channels)
        self.normaliser = ScoreNormaliser()

    def networks(self):
        return {"generator": self.generator, "discriminator": self.discriminator, "normaliser": self.normaliser}

    def trained_networks(self):
        return {"generator": self.generator, "discriminator": self.discriminator}

    @property
    def noise_dim(self) -> int:
        return self.input_shape[0] * self.config.network.latent_dim  # seq_len · latent_dim

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config.training
        return {"d": self.adam(self.discriminator, lr=cfg.lr_d), "g": self.adam(self.generator, lr=cfg.lr_g)}

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)  # (B, seq_len, C)

    def train_step(self, real, gen, optimizers):
        # D judges every time step: its logits, and the targets of both updates, are (B, seq_len)
        return self.nonsaturating_step(real, self.noise(len(real), gen), optimizers)

    # --- after the GAN: the score normaliser on training windows ---------------------------------
    def after_training(self, windows: np.ndarray, progress: bool) -> None:
        """Standardise both score terms on a seeded subset of the training windows (no other data)."""
        n = min(self.config.normaliser_windows, len(windows))
        pick = torch.randperm(len(windows), generator=derived_generator(self.config.training.seed, Stream.NORMALISER))[:n].numpy()
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
        scorer = LatentSearchScorer(self.generator, self.noise_dim, window_mse, self.config.search, to_model_space=self.to_model_space,
                                    input_dtype=self.input_dtype, frozen_modules=(self.generator, self.discriminator), name="latent search (madgan)")
        losses, best = scorer.losses(windows, progress=progress, keep_best=True)
        return losses, best if best is not None else np.zeros((0, *self.input_shape), dtype=np.float32)

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
