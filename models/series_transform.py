"""Per-channel scaling and optional PCA of a multivariate series, fitted on training data only.

The fitted transform is plain arrays (per-channel offset and scale, PCA mean and components),
saved as JSON beside the model, so scoring new data applies exactly what training saw. Test
values outside the training range are not clipped: a reading beyond anything seen in training
is anomaly evidence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from .checkpoint import atomic_write_text
from .errors import GadflowError

FORMAT = "gadflow.series_transform/1"
TRANSFORM_FILE = "series_transform.json"
WINDOWING_FILE = "windowing.json"  # beside a window model: seq_len, stride, tail, label and point rules, input channel names
CONSTANT_SPAN = 1e-12  # a channel whose training spread is below this is constant: scale 1.0
Scaling = Literal["minmax", "standard", "none"]


def _check_series(values: np.ndarray, n_channels: int | None, what: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise GadflowError(f"{what}: expected a 2-D (time, channels) array, got shape {values.shape}")
    if n_channels is not None and values.shape[1] != n_channels:
        raise GadflowError(f"{what}: {values.shape[1]} channels, the transform was fitted on {n_channels}")
    bad = np.argwhere(~np.isfinite(values))
    if bad.size:
        raise GadflowError(f"{what}: NaN or infinite value at row {bad[0][0]}, channel {bad[0][1]}")
    return values


@dataclass
class SeriesTransform:
    """x (T, C) → ((x − offset) / scale) @ components.T − pca_mean projection, (T, K)."""

    scaling: Scaling = "minmax"
    pca_components: int | None = None  # keep this many principal components; None = no PCA
    offset: np.ndarray | None = field(default=None, repr=False)  # (C,)
    scale: np.ndarray | None = field(default=None, repr=False)  # (C,)
    pca_mean: np.ndarray | None = field(default=None, repr=False)  # (C,)
    components: np.ndarray | None = field(default=None, repr=False)  # (K, C), rows = principal axes
    explained_variance_ratio: list[float] | None = None

    @property
    def fitted(self) -> bool:
        return self.offset is not None

    @property
    def n_inputs(self) -> int:
        return int(self.offset.shape[0])

    @property
    def n_outputs(self) -> int:
        return int(self.components.shape[0]) if self.components is not None else self.n_inputs

    def fit(self, train: np.ndarray) -> "SeriesTransform":
        """Fit scaling (and PCA) on the training series (T, C) only."""
        from sklearn.decomposition import PCA

        train = _check_series(train, None, "training series")
        if self.scaling == "minmax":
            self.offset = train.min(axis=0)
            span = train.max(axis=0) - self.offset
        elif self.scaling == "standard":
            self.offset = train.mean(axis=0)
            span = train.std(axis=0)
        elif self.scaling == "none":
            self.offset = np.zeros(train.shape[1])
            span = np.ones(train.shape[1])
        else:
            raise GadflowError(f"scaling must be 'minmax', 'standard' or 'none' (got {self.scaling!r})")
        self.scale = np.where(span < CONSTANT_SPAN, 1.0, span)
        if self.pca_components is not None:
            if not 1 <= self.pca_components <= train.shape[1]:
                raise GadflowError(f"pca_components must be between 1 and the channel count {train.shape[1]} (got {self.pca_components})")
            pca = PCA(n_components=self.pca_components, svd_solver="full").fit((train - self.offset) / self.scale)
            self.pca_mean = pca.mean_
            self.components = pca.components_
            self.explained_variance_ratio = [float(v) for v in pca.explained_variance_ratio_]
        return self

    def transform(self, values: np.ndarray) -> np.ndarray:
        """(T, C) → (T, K) float32 with the fitted parameters; never refits."""
        if not self.fitted:
            raise GadflowError("series transform used before it was fitted")
        values = _check_series(values, self.n_inputs, "series")
        scaled = (values - self.offset) / self.scale
        if self.components is not None:
            scaled = (scaled - self.pca_mean) @ self.components.T
        return scaled.astype(np.float32)

    def to_dict(self) -> dict:
        if not self.fitted:
            raise GadflowError("series transform saved before it was fitted")
        arrays = {k: (None if getattr(self, k) is None else getattr(self, k).tolist()) for k in ("offset", "scale", "pca_mean", "components")}
        return {"format": FORMAT, "scaling": self.scaling, "pca_components": self.pca_components,
                "explained_variance_ratio": self.explained_variance_ratio, **arrays}

    @classmethod
    def from_dict(cls, data: dict) -> "SeriesTransform":
        if data.get("format") != FORMAT:
            raise GadflowError(f"not a gadflow series transform (format {data.get('format')!r}, expected {FORMAT})")
        arrays = {k: (None if data[k] is None else np.asarray(data[k], dtype=np.float64)) for k in ("offset", "scale", "pca_mean", "components")}
        return cls(scaling=data["scaling"], pca_components=data["pca_components"],
                   explained_variance_ratio=data["explained_variance_ratio"], **arrays)

    def save(self, path: Path) -> Path:
        return atomic_write_text(Path(path), json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: Path) -> "SeriesTransform":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise GadflowError(f"{path}: series transform not found") from None
        except (json.JSONDecodeError, KeyError) as exc:
            raise GadflowError(f"{path}: not a readable series transform ({exc})") from None
