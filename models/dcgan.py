"""DCGAN anomaly detector (the seed's method): non-saturating GAN training, scored by its discriminator D.

Two scores, both D's (``score_method``):
- ``discriminator`` (the seed's): 1 − D(x).
- ``feature_mahalanobis``: the squared Mahalanobis distance of D's last conv block f(x) (B, F) from the training
  normals' features, after a PCA to ``feature_variance`` of their variance, with a Ledoit-Wolf covariance. The
  statistics are fitted on up to ``feature_fit_rows`` training normals after training (and before each selection
  measurement, for the weights of that epoch) and travel with the model. 1 − D(x) turns into "unlike G's current
  samples" as G improves; the features keep describing the normal class (benchmarks/dcgan_feature_scores.py).

Training is the shared trainer's (``models.trainer``): checkpoints every epoch, resumes bit-identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch

from .base import Capabilities, FittedArrays, evaluating
from .dcgan_nets import DCGANNetwork, DCGANShape, Discriminator, Generator
from .errors import GadflowError
from .selection import EpochSelection, subset
from .settings import nested, setting
from .trainer import GANDetector, ModelConfig, TrainingConfig

FEATURE_BATCH = 1024  # images per forward pass when the feature statistics are fitted


@dataclass(frozen=True)
class DCGANTrainingSettings(ModelConfig):
    """What every detector that trains this GAN shares (DCGAN, and ADGAN/AnoGAN in models.latent_gans)."""

    network: DCGANNetwork = nested(DCGANNetwork)
    training: TrainingConfig = nested(TrainingConfig)
    selection: EpochSelection = nested(EpochSelection)  # which epoch's weights the model keeps (models.selection)


@dataclass(frozen=True)
class DCGANConfig(DCGANTrainingSettings):
    """DCGAN scored by its discriminator (``score_method``)."""

    kind: Literal["dcgan"] = "dcgan"
    score_method: Literal["discriminator", "feature_mahalanobis"] = "discriminator"
    feature_fit_rows: int = setting(4000, ge=10, le=1_000_000)  # feature_mahalanobis: training normals fitted on (a seeded subset)
    feature_variance: float = setting(0.95, gt=0.0, lt=1.0)  # feature_mahalanobis: share of the features' variance the PCA keeps


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

    @property
    def scores_features(self) -> bool:
        return getattr(self.config, "score_method", "discriminator") == "feature_mahalanobis"

    def build_networks(self) -> None:
        self.generator = Generator(self.shape)
        self.discriminator = Discriminator(self.shape)
        self.feature_statistics = FittedArrays()  # feature_mahalanobis: mean, components, location, precision

    def networks(self):
        nets = {"generator": self.generator, "discriminator": self.discriminator}
        return {**nets, "feature_statistics": self.feature_statistics} if self.scores_features else nets

    def trained_networks(self):
        return {"generator": self.generator, "discriminator": self.discriminator}

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config.training
        return {"d": self.adam(self.discriminator, lr=cfg.lr_d), "g": self.adam(self.generator, lr=cfg.lr_g)}

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)  # (B, C, H, W) in [-1, 1]

    def train_step(self, real, gen, optimizers):
        return self.nonsaturating_step(real, self.noise(len(real), gen), optimizers)

    # --- the feature score ----------------------------------------------------------------------
    def after_training(self, inputs: np.ndarray, progress: bool) -> None:
        self.fit_score_statistics(inputs)

    def fit_score_statistics(self, inputs: np.ndarray) -> None:
        """feature_mahalanobis: PCA and Ledoit-Wolf covariance of D's features on a seeded subset of the training inputs."""
        if not self.scores_features:
            return
        from sklearn.covariance import LedoitWolf
        from sklearn.decomposition import PCA

        rows = subset(np.arange(len(inputs)), self.config.feature_fit_rows, seed=self.config.training.seed)
        features = []
        with torch.no_grad(), evaluating([self.discriminator]):
            for start in range(0, len(rows), FEATURE_BATCH):
                batch = self.to_model_space(np.asarray(inputs[rows[start : start + FEATURE_BATCH]]))
                features.append(self.discriminator.features(batch).flatten(1).double().cpu().numpy())
        f = np.concatenate(features)  # (N, F) float64
        pca = PCA(n_components=self.config.feature_variance, svd_solver="covariance_eigh").fit(f)  # eigh of the (F, F) covariance: fast when N > F
        covariance = LedoitWolf().fit(pca.transform(f))  # on (N, K)
        self.feature_statistics.put(mean=pca.mean_.astype(np.float32), components=pca.components_.astype(np.float32),  # (F,), (K, F)
                                    location=covariance.location_.astype(np.float32), precision=covariance.precision_.astype(np.float32))  # (K,), (K, K)

    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
        if not self.scores_features:
            return torch.sigmoid(-self.discriminator(x))  # 1 − D(x), (B,)
        stats = self.feature_statistics
        if not hasattr(stats, "precision"):
            raise GadflowError("dcgan: score_method feature_mahalanobis has no fitted statistics; train the model first")
        mean, components, location, precision = (getattr(stats, k).to(x.device) for k in ("mean", "components", "location", "precision"))
        z = (self.discriminator.features(x).flatten(1) - mean) @ components.T - location  # (B, K)
        return ((z @ precision) * z).sum(1)  # (B,) squared Mahalanobis distance
