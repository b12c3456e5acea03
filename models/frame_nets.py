"""MAD-GAN's networks for image sequences: a small CNN per frame feeding (or fed by) the LSTMs.

A window is (B, T, C·H·W): T frames, each flattened, pixels in [0, 1] (the prepare stage's scaling).
    G: z (B, T·latent) -> LSTM (B, T, hidden) -> per-frame deconvolutions -> (B, T, C·H·W), sigmoid pixels
    D: (B, T, C·H·W) -> per-frame convolutions (B·T, features) -> LSTM (B, T, hidden) -> one logit per frame (B, T)
No batch normalisation anywhere: a frame's output depends on its own window only, as the latent search needs.
H and W must be multiples of 4 (two stride-2 stages).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .errors import GadflowError


def check_frame_shape(frame_shape: tuple[int, ...], channels: int) -> None:
    if len(frame_shape) != 3 or math.prod(frame_shape) != channels:
        raise GadflowError(f"frame_shape {tuple(frame_shape)} does not flatten to the {channels} values of one time step")
    if frame_shape[1] % 4 or frame_shape[2] % 4:
        raise GadflowError(f"frame_shape {tuple(frame_shape)}: height and width must be multiples of 4")


class FrameEncoder(nn.Module):
    """(M, C, H, W) -> (M, features): two stride-2 convolutions, then a linear layer."""

    def __init__(self, frame_shape: tuple[int, int, int], base_channels: int, features: int) -> None:
        super().__init__()
        c, h, w = frame_shape
        self.net = nn.Sequential(
            nn.Conv2d(c, base_channels, 4, 2, 1), nn.LeakyReLU(0.2),  # (M, b, H/2, W/2)
            nn.Conv2d(base_channels, 2 * base_channels, 4, 2, 1), nn.LeakyReLU(0.2),  # (M, 2b, H/4, W/4)
            nn.Flatten(), nn.Linear(2 * base_channels * (h // 4) * (w // 4), features), nn.LeakyReLU(0.2),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames)


class FrameDecoder(nn.Module):
    """(M, features) -> (M, C, H, W) pixels in [0, 1]: a linear layer, then two stride-2 transposed convolutions."""

    def __init__(self, frame_shape: tuple[int, int, int], base_channels: int, features: int) -> None:
        super().__init__()
        c, h, w = frame_shape
        self.start = (2 * base_channels, h // 4, w // 4)
        self.linear = nn.Sequential(nn.Linear(features, math.prod(self.start)), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * base_channels, base_channels, 4, 2, 1), nn.ReLU(),  # (M, b, H/2, W/2)
            nn.ConvTranspose2d(base_channels, c, 4, 2, 1), nn.Sigmoid(),  # (M, C, H, W)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(self.linear(features).reshape(len(features), *self.start))


class FrameLSTMGenerator(nn.Module):
    """Flat z (B, T·latent) -> window of frames (B, T, C·H·W); flat so the latent-search engine can optimise it."""

    def __init__(self, seq_len: int, frame_shape: tuple[int, int, int], latent_dim: int, hidden_dim: int, num_layers: int,
                 base_channels: int) -> None:
        super().__init__()
        self.seq_len, self.latent_dim = seq_len, latent_dim
        self.lstm = nn.LSTM(latent_dim, hidden_dim, num_layers=num_layers, batch_first=True)
        self.decoder = FrameDecoder(frame_shape, base_channels, hidden_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b = len(z)
        steps, _ = self.lstm(z.reshape(b, self.seq_len, self.latent_dim))  # (B, T, hidden)
        frames = self.decoder(steps.reshape(b * self.seq_len, -1))  # (B·T, C, H, W)
        return frames.reshape(b, self.seq_len, -1)  # (B, T, C·H·W)


class FrameLSTMDiscriminator(nn.Module):
    """Window of frames (B, T, C·H·W) -> one logit per frame (B, T)."""

    def __init__(self, frame_shape: tuple[int, int, int], hidden_dim: int, num_layers: int, base_channels: int) -> None:
        super().__init__()
        self.frame_shape = tuple(frame_shape)
        self.encoder = FrameEncoder(self.frame_shape, base_channels, hidden_dim)
        self.lstm = nn.LSTM(hidden_dim, hidden_dim, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        features = self.encoder(x.reshape(b * t, *self.frame_shape)).reshape(b, t, -1)  # (B, T, hidden)
        steps, _ = self.lstm(features)  # (B, T, hidden)
        return self.head(steps).squeeze(-1)  # (B, T)
