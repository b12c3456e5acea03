"""DCGAN generator and discriminator for C×H×W images (H = W, divisible by 4: 28, 32, 64, ...)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from .errors import GadflowError
from .settings import Settings, setting


@dataclass(frozen=True)
class DCGANNetwork(Settings):
    """The DCGAN networks' settings (DCGAN, ADGAN and AnoGAN train these)."""

    latent_dim: int = setting(64, ge=1, le=4096)  # dimension of z
    base_channels: int = setting(32, ge=4, le=1024)  # feature maps of the widest-resolution conv layer; doubles per level down
    discriminator_norm: Literal["batch", "spectral"] = "batch"  # "spectral": Miyato et al. 2018, no BatchNorm in D


@dataclass(frozen=True)
class DCGANShape:
    """Image and latent geometry that fixes the network layout."""

    channels: int  # C
    size: int  # H = W
    latent_dim: int  # dimension of z
    base_channels: int  # feature maps of the widest-resolution conv layer
    discriminator_norm: str = "batch"  # "batch": BatchNorm (Radford et al.); "spectral": spectral norm on every D layer

    @classmethod
    def of(cls, image_shape: tuple[int, ...], network: DCGANNetwork) -> "DCGANShape":
        """The geometry for (C, H, W) images and these network settings; H must equal W."""
        channels, height, width = (int(v) for v in image_shape)
        if height != width:
            raise GadflowError(f"images are {height}×{width}; the DCGAN networks take square images only")
        return cls(channels, height, network.latent_dim, network.base_channels, network.discriminator_norm)

    @property
    def n_scales(self) -> int:
        """Number of ×2 up-samplings from the smallest feature map (>= 4 px) to the image."""
        if self.size % 4 or self.size < 8:
            raise GadflowError(f"image size {self.size} not supported: need H = W, divisible by 4, >= 8")
        n = 0
        while self.size % 2 ** (n + 1) == 0 and self.size // 2 ** (n + 1) >= 4:
            n += 1
        return n  # 28 -> 2 (7 px), 32 -> 3 (4 px), 64 -> 4 (4 px)

    @property
    def start_size(self) -> int:
        return self.size // 2**self.n_scales

    def width(self, level: int) -> int:
        """Channels at a level, 0 = the image resolution's conv layer; doubles per level down."""
        return self.base_channels * 2**level


def init_dcgan_weights(module: nn.Module) -> None:
    """Radford et al. init: conv/linear ~ N(0, 0.02); BatchNorm gamma ~ N(1, 0.02), beta = 0.

    Apply with ``net.apply(init_dcgan_weights)`` (calling it on the net alone would touch nothing).
    """
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """z (B, latent_dim) -> image (B, C, H, W) in [-1, 1]."""

    def __init__(self, shape: DCGANShape) -> None:
        super().__init__()
        self.shape = shape
        top = shape.n_scales - 1
        s0 = shape.start_size
        self.project = nn.Sequential(
            nn.Linear(shape.latent_dim, shape.width(top) * s0 * s0, bias=False),
            nn.Unflatten(1, (shape.width(top), s0, s0)),
            nn.BatchNorm2d(shape.width(top)),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        for level in range(top, 0, -1):  # (width(l), s, s) -> (width(l-1), 2s, 2s)
            blocks += [
                nn.ConvTranspose2d(shape.width(level), shape.width(level - 1), 4, 2, 1, bias=False),
                nn.BatchNorm2d(shape.width(level - 1)),
                nn.ReLU(inplace=True),
            ]
        blocks += [nn.ConvTranspose2d(shape.width(0), shape.channels, 4, 2, 1), nn.Tanh()]
        self.upsample = nn.Sequential(*blocks)
        self.apply(init_dcgan_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.project(z))  # (B, C, H, W)


def conv_body(shape: DCGANShape, spectral: bool = False) -> nn.Sequential:
    """image (B, C, H, W) -> flat features (B, width(top) * s0 * s0): strided convs, the DCGAN discriminator's body.

    No normalisation on the input layer; BatchNorm on the others unless ``spectral`` (then conv biases instead).
    """
    layers: list[nn.Module] = [
        nn.Conv2d(shape.channels, shape.width(0), 4, 2, 1),
        nn.LeakyReLU(0.2, inplace=True),
    ]
    for level in range(1, shape.n_scales):  # (width(l-1), s, s) -> (width(l), s/2, s/2)
        layers += [nn.Conv2d(shape.width(level - 1), shape.width(level), 4, 2, 1, bias=spectral)]
        layers += [] if spectral else [nn.BatchNorm2d(shape.width(level))]
        layers += [nn.LeakyReLU(0.2, inplace=True)]
    layers.append(nn.Flatten())
    return nn.Sequential(*layers)


def body_width(shape: DCGANShape) -> int:
    """Length of the flat feature vector ``conv_body`` returns."""
    return shape.width(shape.n_scales - 1) * shape.start_size**2


class Discriminator(nn.Module):
    """image (B, C, H, W) -> real/fake logit (B,); ``features`` gives the last conv block (B, F).

    With ``discriminator_norm="spectral"`` every layer's weight is divided by its largest singular
    value (Miyato et al. 2018: D is 1-Lipschitz per layer) and there is no BatchNorm, so D's output for
    one image never depends on the rest of its batch. The power iteration runs in training mode only;
    in eval mode the stored estimate is used, so scoring is deterministic.
    """

    def __init__(self, shape: DCGANShape) -> None:
        super().__init__()
        if shape.discriminator_norm not in ("batch", "spectral"):
            raise GadflowError(f"discriminator_norm must be 'batch' or 'spectral', got {shape.discriminator_norm!r}")
        self.shape = shape
        spectral = shape.discriminator_norm == "spectral"
        self.body = conv_body(shape, spectral)
        self.head = nn.Linear(body_width(shape), 1)
        self.apply(init_dcgan_weights)
        if spectral:  # after init: the parametrisation wraps the initialised weight
            for module in [*self.body, self.head]:
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    nn.utils.parametrizations.spectral_norm(module)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (B, width(top) * s0 * s0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)  # (B,) logits


class ConvEncoder(nn.Module):
    """image (B, C, H, W) -> vector (B, out_dim): the discriminator's conv body, then a linear map.

    The encoder E of BiGAN/EGBAD and the encoders G_E and E of GANomaly.
    """

    def __init__(self, shape: DCGANShape, out_dim: int) -> None:
        super().__init__()
        self.body = conv_body(shape)
        self.head = nn.Linear(body_width(shape), out_dim)
        self.apply(init_dcgan_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))  # (B, out_dim)
