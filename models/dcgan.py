"""DCGAN anomaly detector (the seed's method): non-saturating GAN training, score = 1 − D(x).

Training is the shared trainer's (``models.trainer``): checkpoints every epoch, resumes bit-identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from .base import Capabilities
from .dcgan_nets import DCGANNetwork, DCGANShape, Discriminator, Generator
from .selection import EpochSelection
from .settings import nested
from .trainer import GANDetector, ModelConfig, TrainingConfig


@dataclass(frozen=True)
class DCGANConfig(ModelConfig):
    kind: Literal["dcgan"] = "dcgan"
    network: DCGANNetwork = nested(DCGANNetwork)
    training: TrainingConfig = nested(TrainingConfig)
    selection: EpochSelection = nested(EpochSelection)  # which epoch's weights the model keeps (models.selection)


class DCGANDetector(GANDetector):
    config_cls = DCGANConfig
    capabilities = Capabilities(input_kinds=("image",))
    draws_global_rng: ClassVar[bool] = False  # no dropout: its epoch stream holds shuffling and noise only

    @property
    def trained_as(self) -> str:
        return "dcgan"  # ADGAN and AnoGAN train this very GAN and share its checkpoints

    @property
    def shape(self) -> DCGANShape:
        return DCGANShape.of(self.input_shape, self.config.network)

    def build_networks(self) -> None:
        self.generator = Generator(self.shape)
        self.discriminator = Discriminator(self.shape)

    def networks(self):
        return {"generator": self.generator, "discriminator": self.discriminator}

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config.training
        return {"d": self.adam(self.discriminator, lr=cfg.lr_d), "g": self.adam(self.generator, lr=cfg.lr_g)}

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)  # (B, C, H, W) in [-1, 1]

    def train_step(self, real, gen, optimizers):
        return self.nonsaturating_step(real, self.noise(len(real), gen), optimizers)

    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(-self.discriminator(x))  # 1 − D(x), (B,)
