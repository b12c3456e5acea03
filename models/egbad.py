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

import torch
import torch.nn.functional as F

from .adversarial import AdversarialDetector, EncoderGANConfig
from .encoder_nets import build_encoder, build_generator, build_joint_discriminator
from .errors import GadflowError

SCORE_METHODS = ("feature_matching", "cross_entropy")


@dataclass
class EGBADConfig(EncoderGANConfig):
    alpha: float = 0.9  # weight of the reconstruction residual; 1 − α weighs the discriminator term
    score_method: str = "feature_matching"  # L_D: "feature_matching" | "cross_entropy"

    scoring_fields = ("alpha", "score_method")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.score_method not in SCORE_METHODS:
            raise GadflowError(f"score_method must be one of {SCORE_METHODS}, got {self.score_method!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise GadflowError(f"alpha must be in [0, 1], got {self.alpha}")


class EGBADDetector(AdversarialDetector):
    kind = "egbad"
    config_cls = EGBADConfig

    def build_networks(self) -> None:
        cfg = self.config
        args = (cfg.input_shape, cfg.latent_dim, cfg.base_channels, cfg.hidden_dims)
        self.generator = build_generator(*args)
        self.encoder = build_encoder(*args)
        self.discriminator = build_joint_discriminator(*args, cfg.dropout)

    def networks(self):
        return {"generator": self.generator, "encoder": self.encoder, "discriminator": self.discriminator}

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"d": self.adam(self.discriminator, lr=self.config.lr_d), "ge": self.adam(self.generator, self.encoder, lr=self.config.lr_g)}

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

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Model-space batch -> z = E(x) (B, latent): the latent-search engine's optional warm start."""
        return self.encoder(x)

    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x)  # (B, latent)
        reconstruction = self.generator(z)  # (B, ...)
        residual = (x - reconstruction).abs().flatten(1).sum(1)  # ‖x − G(E(x))‖₁, (B,)
        if self.config.score_method == "feature_matching":
            distance = (self.discriminator.features(x, z) - self.discriminator.features(reconstruction, z)).abs().sum(1)
        else:  # −log D(x, E(x)): high when D finds the real pair fake
            distance = F.binary_cross_entropy_with_logits(self.discriminator(x, z), torch.ones(len(x), device=x.device), reduction="none")
        return self.config.alpha * residual + (1 - self.config.alpha) * distance
