"""Reference detectors without a GAN, fitted on the same training normals: every GAN is judged beside them.

- ``knn``: the distance from a sample to its k-th nearest training normal (scikit-learn's exact neighbour search).
- ``pca``: the mean squared residual of a sample after projecting it onto the principal components that explain
  ``variance`` of the training normals' variance (scikit-learn's decomposition, full SVD: deterministic).

Both take images (flattened, in the models' [-1, 1] pixel space) and feature tables. What they fit is kept as
buffers of one module (``FittedArrays``), so model.pt, ``model_id``, loading and serving work as for the GANs. They
have no generator: no Monte Carlo threshold, no samples, no checkpoints (fitting takes seconds).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from .base import Capabilities, Detector, FittedArrays, ModelConfig
from .errors import GadflowError
from .settings import setting

log = logging.getLogger(__name__)

REFERENCE_CAPABILITIES = Capabilities(input_kinds=("image", "tabular"), monte_carlo_labels=False, generator=False, reference=True)


class ReferenceDetector(Detector):
    """Fit / score on flattened model-space inputs, (N, D) float32; no training loop, so ``fit`` returns no history."""

    capabilities = REFERENCE_CAPABILITIES

    def __init__(self, config: ModelConfig, inputs) -> None:
        super().__init__(config, inputs)
        self.fitted = FittedArrays()

    def networks(self) -> dict[str, nn.Module]:
        return {"fitted": self.fitted}

    def flat(self, inputs: np.ndarray) -> np.ndarray:
        """(N, ...) stored inputs -> (N, D) float32 in model space (images: [-1, 1])."""
        return self.to_model_space(inputs).reshape(len(inputs), -1).cpu().numpy()

    def fit(self, inputs: np.ndarray, progress: bool = True) -> list:
        """Fit on normal inputs (the train step's call; there are no epochs or checkpoints). Returns no history."""
        self.check_input(inputs)
        self.fit_arrays(self.flat(np.asarray(inputs)))
        return []

    def fit_arrays(self, x: np.ndarray) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class KNNConfig(ModelConfig):
    kind: Literal["knn"] = "knn"
    k: int = setting(5, ge=1, le=1000)  # the score is the distance to the k-th nearest training normal


class KNNDetector(ReferenceDetector):
    config_cls = KNNConfig

    def __init__(self, config: KNNConfig, inputs) -> None:
        super().__init__(config, inputs)
        self._index = None  # scikit-learn's neighbour index over the training normals, built on first use

    def fit_arrays(self, x: np.ndarray) -> None:
        if len(x) <= self.config.k:
            raise GadflowError(f"knn: k = {self.config.k} needs more than {self.config.k} training samples, got {len(x)}")
        # Tables repeat rows (KDD99's 178,599 training normals hold 32,396 distinct ones): each distinct row is kept
        # once with its count, which gives the same k-th distance as searching every row, at a fraction of the cost.
        normals, counts = np.unique(x, axis=0, return_counts=True)
        self.fitted.put(normals=normals, counts=counts.astype(np.int64))  # (U, D) float32 distinct normals, (U,) their counts
        self._index = None
        log.info("knn: %d training normals (%d distinct) of %d features, k = %d", len(x), len(normals), x.shape[1], self.config.k)

    def index(self):
        if self._index is None:
            from sklearn.neighbors import NearestNeighbors

            if not hasattr(self.fitted, "normals"):
                raise GadflowError("knn: not fitted")
            normals = self.fitted.normals.cpu().numpy()
            self._index = NearestNeighbors(n_neighbors=min(self.config.k, len(normals))).fit(normals)
        return self._index

    def kth_distance(self, x: np.ndarray) -> np.ndarray:
        """(B, D) -> (B,) distance to the k-th nearest training normal, counting repeated normals as often as they occur.

        The k nearest *distinct* normals hold at least k normals, so the answer is among them: the first whose
        running count reaches k. Repeated queries are searched once.
        """
        queries, inverse = np.unique(x, axis=0, return_inverse=True)
        distances, neighbours = self.index().kneighbors(queries)  # (Q, k') ascending, k' = min(k, distinct normals)
        reached = np.cumsum(self.fitted.counts.cpu().numpy()[neighbours], axis=1) >= self.config.k  # (Q, k')
        kth = distances[np.arange(len(queries)), reached.argmax(axis=1)]
        return kth[inverse.reshape(-1)]

    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.kth_distance(x.reshape(len(x), -1).cpu().numpy()).astype(np.float64))


@dataclass(frozen=True)
class PCAConfig(ModelConfig):
    kind: Literal["pca"] = "pca"
    variance: float = setting(0.95, gt=0.0, lt=1.0)  # keep the components that explain this fraction of the variance


class PCADetector(ReferenceDetector):
    config_cls = PCAConfig

    def fit_arrays(self, x: np.ndarray) -> None:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=self.config.variance, svd_solver="full").fit(x)
        self.fitted.put(mean=pca.mean_.astype(np.float32), components=pca.components_.astype(np.float32))  # (D,), (K, D)
        log.info("pca: %d of %d components explain %.3f of the training normals' variance",
                 pca.n_components_, x.shape[1], float(pca.explained_variance_ratio_.sum()))

    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self.fitted, "components"):
            raise GadflowError("pca: not fitted")
        centred = x.reshape(len(x), -1) - self.fitted.mean.to(x.device)  # (B, D); the fitted arrays stay on the CPU
        components = self.fitted.components.to(x.device)  # (K, D), orthonormal rows
        residual = centred - (centred @ components.T) @ components  # what the K components leave out, (B, D)
        return residual.pow(2).mean(dim=1)  # (B,)
