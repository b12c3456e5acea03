"""Networks of the encoder GANs (BiGAN/EGBAD, GANomaly), for images and for tabular features.

Images (C, H, W) use the DCGAN layouts of ``dcgan_nets.py`` (any channel count); tabular features (D,)
use small MLPs. Every network is built by one function of the input shape, so a detector never
branches on the data kind itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .dcgan_nets import ConvEncoder, DCGANNetwork, DCGANShape, Discriminator, Generator, body_width, conv_body, init_dcgan_weights
from .settings import Settings, SettingsError, setting


@dataclass(frozen=True)
class EncoderGANNetwork(Settings):
    """The encoder GANs' networks (EGBAD, GANomaly): DCGAN convolutions for images, MLPs for feature rows."""

    latent_dim: int = setting(64, ge=1, le=4096)
    base_channels: int = setting(32, ge=4, le=1024)  # image networks: feature maps of the widest-resolution conv layer
    hidden_dims: tuple[int, ...] = (128, 64)  # tabular networks: MLP widths, input side first
    dropout: float = setting(0.2, ge=0.0, lt=1.0)  # the discriminators' MLP layers (tabular D; EGBAD's z and joint branches)

    def check(self) -> None:
        if not 1 <= len(self.hidden_dims) <= 8 or any(not isinstance(w, int) or not 1 <= w <= 65_536 for w in self.hidden_dims):
            raise SettingsError(f"hidden_dims: 1 to 8 widths, each 1 to 65536 (got {list(self.hidden_dims)})")


def mlp(sizes: Sequence[int], activation: type[nn.Module], dropout: float = 0.0) -> nn.Sequential:
    """Linear layers sizes[0] -> sizes[1] -> ... -> sizes[-1], each followed by ``activation`` (and dropout)."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers.append(nn.Linear(n_in, n_out))
        layers.append(nn.LeakyReLU(0.2, inplace=True) if activation is nn.LeakyReLU else activation())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class MLPGenerator(nn.Module):
    """z (B, latent) -> features (B, D): hidden layers in reverse order of the encoder's, linear output
    (as in the EGBAD reference code's KDD99 generator)."""

    def __init__(self, latent_dim: int, n_features: int, hidden: Sequence[int]) -> None:
        super().__init__()
        widths = [latent_dim, *reversed(hidden)]
        self.body = mlp(widths, nn.ReLU)
        self.head = nn.Linear(widths[-1], n_features)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(z))  # (B, D)


class MLPEncoder(nn.Module):
    """features (B, D) -> vector (B, out_dim)."""

    def __init__(self, n_features: int, out_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.body = mlp([n_features, *hidden], nn.LeakyReLU)
        self.head = nn.Linear(hidden[-1] if hidden else n_features, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))  # (B, out_dim)


class MLPDiscriminator(nn.Module):
    """features (B, D) -> logit (B,); ``features`` is the last hidden layer (B, hidden[-1])."""

    def __init__(self, n_features: int, hidden: Sequence[int], dropout: float) -> None:
        super().__init__()
        self.body = mlp([n_features, *hidden], nn.LeakyReLU, dropout)
        self.head = nn.Linear(hidden[-1], 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)


class JointDiscriminator(nn.Module):
    """BiGAN's D(x, z) -> logit (B,). x and z each pass their own branch; the concatenation passes
    one more layer, whose output is the intermediate feature f(x, z) used by feature matching.

    x branch: the DCGAN conv body for images, an MLP for tabular features.
    """

    def __init__(self, x_branch: nn.Module, x_width: int, latent_dim: int, width: int, dropout: float) -> None:
        super().__init__()
        self.x_branch = x_branch
        self.z_branch = mlp([latent_dim, width], nn.LeakyReLU, dropout)
        self.joint = mlp([x_width + width, width], nn.LeakyReLU, dropout)
        self.head = nn.Linear(width, 1)

    def features(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.joint(torch.cat([self.x_branch(x), self.z_branch(z)], dim=1))  # (B, width)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x, z)).squeeze(1)  # (B,) logits


def image_shape(input_shape: Sequence[int], net: EncoderGANNetwork) -> DCGANShape | None:
    """The DCGAN geometry for (C, H, W) inputs; None for tabular (D,) inputs."""
    if len(input_shape) == 3:
        return DCGANShape.of(tuple(input_shape), DCGANNetwork(latent_dim=net.latent_dim, base_channels=net.base_channels))
    return None


def build_generator(input_shape: Sequence[int], net: EncoderGANNetwork) -> nn.Module:
    """z (B, latent) -> (B, C, H, W) in [-1, 1], or (B, D)."""
    shape = image_shape(input_shape, net)
    return Generator(shape) if shape else MLPGenerator(net.latent_dim, int(input_shape[0]), net.hidden_dims)


def build_encoder(input_shape: Sequence[int], net: EncoderGANNetwork) -> nn.Module:
    """(B, C, H, W) or (B, D) -> z (B, latent)."""
    shape = image_shape(input_shape, net)
    return ConvEncoder(shape, net.latent_dim) if shape else MLPEncoder(int(input_shape[0]), net.latent_dim, net.hidden_dims)


def build_discriminator(input_shape: Sequence[int], net: EncoderGANNetwork) -> nn.Module:
    """D(x) -> logit (B,) with ``features(x)``: GANomaly's discriminator."""
    shape = image_shape(input_shape, net)
    return Discriminator(shape) if shape else MLPDiscriminator(int(input_shape[0]), net.hidden_dims, net.dropout)


def build_joint_discriminator(input_shape: Sequence[int], net: EncoderGANNetwork) -> JointDiscriminator:
    """D(x, z) -> logit (B,) with ``features(x, z)``: BiGAN/EGBAD's discriminator."""
    shape = image_shape(input_shape, net)
    hidden, dropout = net.hidden_dims, net.dropout
    if shape:
        x_branch, x_width, width = conv_body(shape), body_width(shape), 8 * net.base_channels
    else:
        x_branch, x_width, width = mlp([int(input_shape[0]), hidden[0]], nn.LeakyReLU, dropout), hidden[0], hidden[0]
    joint = JointDiscriminator(x_branch, x_width, net.latent_dim, width, dropout)
    if shape:  # image networks use the DCGAN init throughout; MLPs keep PyTorch's default
        joint.apply(init_dcgan_weights)
    return joint
