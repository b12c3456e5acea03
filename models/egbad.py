"""BiGAN / EGBAD anomaly detector (Donahue et al. 2016; Zenati et al. 2018), for images and tabular data.

Networks: generator G(z), encoder E(x), joint discriminator D(x, z), trained adversarially on the
real pairs (x, E(x)) against the generated pairs (G(z), z). Scoring needs no optimisation:

    A(x) = α·‖x − G(E(x))‖₁ + (1 − α)·L_D(x)

with L_D the feature-matching distance ‖f(x, E(x)) − f(G(E(x)), E(x))‖₁ on D's intermediate layer, or
the cross-entropy −log D(x, E(x)). The defaults, α = 0.9 on the residual and feature matching, are the
paper's and its reference code's (which weights the discriminator term by 0.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from .base import Capabilities, ModelConfig
from .encoder_nets import EncoderGANNetwork, build_encoder, build_generator, build_joint_discriminator
from .selection import EpochSelection
from .settings import nested, setting
from .trainer import GANDetector, TrainingConfig


@dataclass(frozen=True)
class EGBADConfig(ModelConfig):
    kind: Literal["egbad"] = "egbad"
    network: EncoderGANNetwork = nested(EncoderGANNetwork)
    training: TrainingConfig = nested(TrainingConfig)
    selection: EpochSelection = nested(EpochSelection)  # which epoch's weights the model keeps (models.selection)
    alpha: float = setting(0.9, ge=0.0, le=1.0)  # weight of the reconstruction residual; 1 − α weighs the discriminator term
    score_method: Literal["feature_matching", "cross_entropy"] = "feature_matching"  # L_D


class EGBADDetector(GANDetector):
    config_cls = EGBADConfig
    capabilities = Capabilities(input_kinds=("image", "tabular"))

    def build_networks(self) -> None:
        shape, net = self.input_shape, self.config.network
        self.generator = build_generator(shape, net)
        self.encoder = build_encoder(shape, net)
        self.discriminator = build_joint_discriminator(shape, net)

    def networks(self):
        return {"generator": self.generator, "encoder": self.encoder, "discriminator": self.discriminator}

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config.training
        return {"d": self.adam(self.discriminator, lr=cfg.lr_d), "ge": self.adam(self.generator, self.encoder, lr=cfg.lr_g)}

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)

    def train_step(self, real, gen, optimizers):
        z = self.noise(len(real), gen)  # (B, latent)
        fake = self.generator(z)  # (B, ...)
        encoded = self.encoder(real)  # (B, latent)
        ones, zeros = torch.ones(len(real), device=self.device), torch.zeros(len(real), device=self.device)

        # update D: maximise log D(x, E(x)) + log(1 − D(G(z), z))
        logit_real = self.discriminator(real, encoded.detach())
        logit_fake = self.discriminator(fake.detach(), z)
        loss_d = F.binary_cross_entropy_with_logits(logit_real, ones) + F.binary_cross_entropy_with_logits(logit_fake, zeros)
        optimizers["d"].zero_grad(set_to_none=True)
        loss_d.backward()
        optimizers["d"].step()

        # update G and E (non-saturating): G maximises log D(G(z), z), E maximises log(1 − D(x, E(x)))
        loss_g = F.binary_cross_entropy_with_logits(self.discriminator(fake, z), ones)
        loss_e = F.binary_cross_entropy_with_logits(self.discriminator(real, encoded), zeros)
        optimizers["ge"].zero_grad(set_to_none=True)
        (loss_g + loss_e).backward()
        optimizers["ge"].step()
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(), "loss_e": loss_e.detach(),
                "d_real": torch.sigmoid(logit_real).mean().detach(), "d_fake": torch.sigmoid(logit_fake).mean().detach()}

    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x)  # (B, latent)
        reconstruction = self.generator(z)  # (B, ...)
        residual = (x - reconstruction).abs().flatten(1).sum(1)  # ‖x − G(E(x))‖₁, (B,)
        if self.config.score_method == "feature_matching":
            distance = (self.discriminator.features(x, z) - self.discriminator.features(reconstruction, z)).abs().sum(1)
        else:  # −log D(x, E(x)): high when D finds the real pair fake
            distance = F.binary_cross_entropy_with_logits(self.discriminator(x, z), torch.ones(len(x), device=x.device), reduction="none")
        return self.config.alpha * residual + (1 - self.config.alpha) * distance
