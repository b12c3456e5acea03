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

from .storage import atomic_write_text
from .errors import GadflowError

FORMAT = "gadflow.series_transform/1"
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
    """x (T, C) → u = log1p(x) if log1p else x → ((u − offset) / scale − pca_mean) @ components.T, (T, K)."""

    scaling: Scaling = "minmax"
    pca_components: int | None = None  # keep this many principal components; None = no PCA
    log1p: bool = False  # a fixed log(1 + x) before scaling (heavy-tailed counts); needs every x > −1
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

    def fit(self, train: np.ndarray | list[np.ndarray]) -> "SeriesTransform":
        """Fit scaling (and PCA) on the training series only: one (T, C) array, or several, never concatenated."""
        parts = [train] if isinstance(train, np.ndarray) else list(train)
        if not parts:
            raise GadflowError("training series: none given")
        n_channels = int(np.shape(parts[0])[-1])

        def checked():  # each part as checked float64 (T_i, C), one at a time: no copy of the whole training set
            for i, part in enumerate(parts):
                yield self._pre(_check_series(part, n_channels, f"training series {i}"), f"training series {i}")

        n = sum(len(p) for p in parts)
        if self.scaling == "minmax":
            lows, highs = zip(*((p.min(axis=0), p.max(axis=0)) for p in checked()))
            self.offset = np.min(lows, axis=0)
            span = np.max(highs, axis=0) - self.offset
        elif self.scaling == "standard":  # pooled over the parts: mean, then the mean squared deviation from it
            self.offset = sum(p.sum(axis=0) for p in checked()) / n
            span = np.sqrt(sum(((p - self.offset) ** 2).sum(axis=0) for p in checked()) / n)
        elif self.scaling == "none":
            list(checked())  # still refuse NaN and wrong shapes
            self.offset = np.zeros(n_channels)
            span = np.ones(n_channels)
        else:
            raise GadflowError(f"scaling must be 'minmax', 'standard' or 'none' (got {self.scaling!r})")
        self.scale = np.where(span < CONSTANT_SPAN, 1.0, span)
        if self.pca_components is not None:
            if not 1 <= self.pca_components <= n_channels:
                raise GadflowError(f"pca_components must be between 1 and the channel count {n_channels} (got {self.pca_components})")
            # Exact PCA of the pooled, scaled training rows from accumulated sums: n, Σx and XᵀX (C × C) over the parts,
            # then the eigenvectors of the covariance, largest first. No part is held twice.
            total, outer = np.zeros(n_channels), np.zeros((n_channels, n_channels))
            for p in checked():
                scaled = (p - self.offset) / self.scale
                total += scaled.sum(axis=0)
                outer += scaled.T @ scaled
            mean = total / n
            covariance = outer / n - np.outer(mean, mean)
            eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
            order = np.argsort(eigenvalues, kind="stable")[::-1][: self.pca_components]
            components = eigenvectors[:, order].T  # (K, C)
            largest = components[np.arange(len(components)), np.abs(components).argmax(axis=1)]
            components *= np.where(largest < 0, -1.0, 1.0)[:, None]  # a fixed sign: each axis's largest loading is positive
            self.pca_mean = mean
            self.components = components
            variance = np.clip(eigenvalues, 0.0, None)
            self.explained_variance_ratio = [float(v) for v in variance[order] / max(float(variance.sum()), 1e-300)]
        return self

    def transform(self, values: np.ndarray) -> np.ndarray:
        """(T, C) → (T, K) float32 with the fitted parameters; never refits."""
        if not self.fitted:
            raise GadflowError("series transform used before it was fitted")
        values = self._pre(_check_series(values, self.n_inputs, "series"), "series")
        scaled = (values - self.offset) / self.scale
        if self.components is not None:
            scaled = (scaled - self.pca_mean) @ self.components.T
        return scaled.astype(np.float32)

    def _pre(self, values: np.ndarray, what: str) -> np.ndarray:
        """(T, C) float64 -> log1p(values) when configured; a value ≤ −1 has no logarithm and is refused."""
        if not self.log1p:
            return values
        bad = np.argwhere(values <= -1.0)
        if bad.size:
            raise GadflowError(f"{what}: value {values[tuple(bad[0])]} at row {bad[0][0]}, channel {bad[0][1]} is ≤ −1; log1p needs x > −1")
        return np.log1p(values)

    def to_dict(self) -> dict:
        if not self.fitted:
            raise GadflowError("series transform saved before it was fitted")
        arrays = {k: (None if getattr(self, k) is None else getattr(self, k).tolist()) for k in ("offset", "scale", "pca_mean", "components")}
        return {"format": FORMAT, "scaling": self.scaling, "pca_components": self.pca_components, "log1p": self.log1p,
                "explained_variance_ratio": self.explained_variance_ratio, **arrays}

    @classmethod
    def from_dict(cls, data: dict) -> "SeriesTransform":
        if data.get("format") != FORMAT:
            raise GadflowError(f"not a gadflow series transform (format {data.get('format')!r}, expected {FORMAT})")
        arrays = {k: (None if data[k] is None else np.asarray(data[k], dtype=np.float64)) for k in ("offset", "scale", "pca_mean", "components")}
        return cls(scaling=data["scaling"], pca_components=data["pca_components"], log1p=bool(data.get("log1p", False)),
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
