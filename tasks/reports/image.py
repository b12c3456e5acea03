"""The report of image data: grids of the most and least anomalous test images, the anomaly maps of a model that has
them, and the latent search's trajectory for a model whose score is a search loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .plots import anomaly_map_grid, image_grid, search_trajectory


def metrics(data, frame: pd.DataFrame, threshold: float, detector) -> dict:
    """Images add no metrics of their own."""
    return {}


def figures(name: str, data, frame: pd.DataFrame, threshold: float, detector, settings, plots: Path) -> None:
    """Grids of the most and least anomalous test images; anomaly maps and search trajectories where the model has them."""
    test_images = data.test
    labels, scores = frame["label"].to_numpy(), frame["score"].to_numpy()
    order = np.argsort(scores, kind="stable")
    k = min(settings.grid_images, len(order))

    def captions(idx: np.ndarray) -> list[str]:  # score, then N/A (normal/anomaly) and the class
        return [f"{scores[i]:.3g} {'A' if labels[i] else 'N'}{frame['class'].iat[i]}" for i in idx]

    for tag, idx in (("most_anomalous", order[::-1][:k]), ("least_anomalous", order[:k])):
        image_grid(np.asarray(test_images[idx]), plots / f"{tag}.png",
                   f"{name}: {k} {tag.replace('_', ' ')} test samples (score, N/A = normal/anomaly + class)", captions(idx))
    if detector.capabilities.anomaly_maps:  # GANomaly: where the contextual residual |x − x̂| sits
        idx = order[::-1][: min(8, len(order))]
        images = np.asarray(test_images[idx])
        reconstructions, maps = detector.anomaly_maps(images)
        anomaly_map_grid(images, reconstructions, maps, captions(idx), plots / "anomaly_maps.png",
                         f"{name}: the {len(idx)} most anomalous test samples, their reconstruction x̂ and |x − x̂|")
    if detector.capabilities.search_loss_score and labels.any():
        # The seed's figure: G(z_t) over the search for the first anomalous test sample, at low and high lr_θ.
        image = np.asarray(test_images[int(np.flatnonzero(labels)[0])])[None]
        low, high = detector.config.search.lr_theta, settings.trajectory_lr_theta_high
        rows = {f"lr_θ={low:g}": detector.search_trajectory(image, low)}
        if detector.tunes_generator:  # AnoGAN keeps θ frozen by definition: one row
            rows[f"lr_θ={high:g}"] = detector.search_trajectory(image, high)
        search_trajectory(image, rows, plots / "search_trajectory.png", f"{name}: latent search on the first anomalous test sample")
