"""GANomaly anomaly detector (Akcay et al. 2018), for images and tabular data.

Generator: encoder G_E, decoder G_D, second encoder E:  x -> z = G_E(x) -> x̂ = G_D(z) -> ẑ = E(x̂).
Discriminator D(x) with intermediate features f(x). The generator minimises

    w_adv·‖f(x) − f(x̂)‖² + w_con·‖x − x̂‖₁ + w_enc·‖z − ẑ‖²

(the adversarial term is feature matching on D's intermediate features, as in the paper, not a
comparison of D's sigmoid outputs); D is trained with the usual real/fake cross-entropy and
re-initialised when its loss collapses below 1e-5, as in the reference code.
Score: ‖G_E(x) − E(G_D(G_E(x)))‖² per sample (mean over latent dimensions). For images the
contextual residual |x − x̂| is also returned as an anomaly map. Scores are raw: no min-max scaling
by test-batch statistics (anomalib's port does that, so its scores depend on the test set).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from .base import Capabilities, ModelConfig, evaluating
from .dcgan_nets import init_dcgan_weights
from .encoder_nets import EncoderGANNetwork, build_discriminator, build_encoder, build_generator
from .errors import GadflowError
from .selection import EpochSelection
from .settings import nested, setting
from .trainer import GANDetector, TrainingConfig

D_COLLAPSE = 1e-5  # D's loss below this: re-initialise D (reference behaviour)


@dataclass(frozen=True)
class GANomalyTraining(TrainingConfig):
    """GANomaly's training: the shared settings plus the generator loss weights."""

    w_adv: float = setting(1.0, ge=0.0, le=1e6)  # feature matching on D's intermediate features
    w_con: float = setting(50.0, ge=0.0, le=1e6)  # contextual L1 ‖x − x̂‖₁
    w_enc: float = setting(1.0, ge=0.0, le=1e6)  # encoder L2 ‖z − ẑ‖²


@dataclass(frozen=True)
class GANomalyConfig(ModelConfig):
    kind: Literal["ganomaly"] = "ganomaly"
    network: EncoderGANNetwork = nested(EncoderGANNetwork)
    training: GANomalyTraining = nested(GANomalyTraining)
    selection: EpochSelection = nested(EpochSelection)  # which epoch's weights the model keeps (models.selection)


class GANomalyDetector(GANDetector):
    config_cls = GANomalyConfig
    capabilities = Capabilities(input_kinds=("image", "tabular"), anomaly_maps=True)

    def build_networks(self) -> None:
        shape, net = self.input_shape, self.config.network
        self.encoder_in = build_encoder(shape, net)  # G_E
        self.decoder = build_generator(shape, net)  # G_D
        self.encoder_out = build_encoder(shape, net)  # E
        self.discriminator = build_discriminator(shape, net)

    def networks(self):
        return {"encoder_in": self.encoder_in, "decoder": self.decoder, "encoder_out": self.encoder_out, "discriminator": self.discriminator}

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config.training
        return {"g": self.adam(self.encoder_in, self.decoder, self.encoder_out, lr=cfg.lr_g), "d": self.adam(self.discriminator, lr=cfg.lr_d)}

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """G_D(z). GANomaly's decoder is not trained as a generator of N(0, I), so these samples (and a
        Monte Carlo threshold built on them) need not look like the data."""
        return self.decoder(z)

    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, ...) -> z = G_E(x) (B, latent), x̂ = G_D(z) (B, ...), ẑ = E(x̂) (B, latent)."""
        z = self.encoder_in(x)
        x_hat = self.decoder(z)
        return z, x_hat, self.encoder_out(x_hat)

    def train_step(self, real, gen, optimizers):
        cfg = self.config.training
        z, x_hat, z_hat = self.reconstruct(real)

        # update G = (G_E, G_D, E): minimise w_adv·‖f(x) − f(x̂)‖² + w_con·‖x − x̂‖₁ + w_enc·‖z − ẑ‖²
        loss_adv = F.mse_loss(self.discriminator.features(x_hat), self.discriminator.features(real).detach())
        loss_con = F.l1_loss(x_hat, real)
        loss_enc = F.mse_loss(z_hat, z)
        loss_g = cfg.w_adv * loss_adv + cfg.w_con * loss_con + cfg.w_enc * loss_enc
        optimizers["g"].zero_grad(set_to_none=True)
        loss_g.backward()
        optimizers["g"].step()

        # update D: maximise log D(x) + log(1 − D(x̂))
        logit_real = self.discriminator(real)
        logit_fake = self.discriminator(x_hat.detach())
        loss_d = F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real)) + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake))
        optimizers["d"].zero_grad(set_to_none=True)
        loss_d.backward()
        optimizers["d"].step()
        if loss_d.item() < D_COLLAPSE:
            self._reinitialise_discriminator(gen)
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(), "loss_adv": loss_adv.detach(), "loss_con": loss_con.detach(),
                "loss_enc": loss_enc.detach(), "d_real": torch.sigmoid(logit_real).mean().detach(), "d_fake": torch.sigmoid(logit_fake).mean().detach()}

    def _reinitialise_discriminator(self, gen: torch.Generator) -> None:
        """Fresh D weights drawn from a seed taken from this epoch's stream (deterministic, resumable)."""
        seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for module in self.discriminator.modules():
                if hasattr(module, "reset_parameters") and module is not self.discriminator:
                    module.reset_parameters()
            if self.is_image:
                self.discriminator.apply(init_dcgan_weights)

    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
        z, _, z_hat = self.reconstruct(x)
        return (z - z_hat).pow(2).mean(1)  # (B,)

    def anomaly_maps(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (N, C, H, W) -> reconstructions x̂ as uint8 (N, C, H, W) and maps |x − x̂| averaged over channels (N, H, W) in [0, 2]."""
        if not self.is_image:
            raise GadflowError("anomaly maps are for image models")
        self.check_input(images)
        with evaluating(self.networks().values()):
            x = self.to_model_space(images)
            _, x_hat, _ = self.reconstruct(x)
            maps = (x - x_hat).abs().mean(1)  # (N, H, W)
        return self.from_model_space(x_hat), maps.cpu().numpy()

