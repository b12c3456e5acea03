"""Report figures (matplotlib, Agg backend). Every function writes one PNG atomically."""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from models.storage import atomic_write_bytes  # noqa: E402

THRESHOLD_COLOURS = {"calibration": "tab:red", "monte_carlo": "tab:purple", "pot": "tab:olive"}


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _tile(images: np.ndarray, ncol: int) -> np.ndarray:
    """uint8 (N, C, H, W) -> one (rows*H, ncol*W[, 3]) mosaic; RGB-D (C = 4) shows RGB | depth side by side."""
    if images.shape[1] == 4:
        images = np.concatenate([images[:, :3], np.repeat(images[:, 3:4], 3, axis=1)], axis=3)  # (N, 3, H, 2W)
    n, c, h, w = images.shape
    shown = images[:, :3] if c >= 3 else images[:, :1]
    nrow = math.ceil(n / ncol)
    canvas = np.full((nrow * (h + 2), ncol * (w + 2), shown.shape[1]), 255, dtype=np.uint8)
    for i, img in enumerate(shown):
        r, col = divmod(i, ncol)
        canvas[r * (h + 2) : r * (h + 2) + h, col * (w + 2) : col * (w + 2) + w] = img.transpose(1, 2, 0)
    return canvas[..., 0] if canvas.shape[-1] == 1 else canvas


def frames_as_images(values: np.ndarray, frame_shape: tuple[int, ...]) -> np.ndarray:
    """Flattened frames with pixels in [0, 1] (..., C·H·W) -> uint8 images (N, C, H, W), for the grids below."""
    return np.clip(np.rint(np.asarray(values) * 255), 0, 255).astype(np.uint8).reshape(-1, *frame_shape)


def image_grid(images: np.ndarray, path: Path, title: str, captions: list[str] | None = None, ncol: int = 8) -> Path:
    """A grid of uint8 (N, C, H, W) images, optionally with one caption per image."""
    ncol = max(1, min(ncol, len(images)))
    nrow = math.ceil(len(images) / ncol)
    if captions is None:
        fig, ax = plt.subplots(figsize=(ncol * 0.9 + 0.5, nrow * 0.9 + 0.6))
        ax.imshow(_tile(images, ncol), cmap="gray", vmin=0, vmax=255)
        ax.axis("off")
        ax.set_title(title, fontsize=9)
        return _save(fig, path)
    fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * 1.1, nrow * 1.25), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, caption in zip(axes.flat, images, captions):
        ax.imshow(_tile(img[None], 1), cmap="gray", vmin=0, vmax=255)
        ax.set_title(caption, fontsize=6)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def score_histogram(groups: dict[str, np.ndarray], thresholds: dict[str, float], path: Path, title: str, xlabel: str = "anomaly score (higher = more anomalous)") -> Path:
    """Overlaid histograms of score groups, with a vertical line per threshold."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    values = np.concatenate([np.asarray(v, dtype=float) for v in groups.values()])
    bins = np.histogram_bin_edges(values, bins=60)
    for label, scores in groups.items():
        ax.hist(scores, bins=bins, alpha=0.55, density=True, label=f"{label} (n={len(scores)})")
    for name, value in thresholds.items():
        ax.axvline(value, color=THRESHOLD_COLOURS.get(name, "black"), linestyle="--", label=f"{name} threshold {value:.4g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, path)


def roc_plot(labels: np.ndarray, scores: np.ndarray, operating_points: dict[str, tuple[float, float]], path: Path, title: str,
             references: dict[str, tuple[np.ndarray, float]] | None = None) -> Path:
    """ROC curve with each threshold's (FPR, TPR) marked; reference detectors' curves on the same rows dashed
    (``references``: name -> (their scores, their AUROC as the report measured it))."""
    fpr, tpr, _ = roc_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.plot(fpr, tpr, label="ROC")
    for name, (ref, auroc) in (references or {}).items():
        ref_fpr, ref_tpr, _ = roc_curve(labels, ref)
        ax.plot(ref_fpr, ref_tpr, linestyle="--", linewidth=1.0, label=f"{name} (AUROC {auroc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
    for name, (x, y) in operating_points.items():
        ax.scatter([x], [y], color=THRESHOLD_COLOURS.get(name, "black"), zorder=3, label=f"{name} (FPR {x:.3f}, TPR {y:.3f})")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def pr_plot(labels: np.ndarray, scores: np.ndarray, operating_points: dict[str, tuple[float, float]], path: Path, title: str) -> Path:
    """Precision-recall curve of the anomaly class, each threshold's (recall, precision) marked."""
    precision, recall, _ = precision_recall_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.plot(recall, precision, label="PR")
    ax.axhline(np.mean(labels), color="grey", linestyle=":", linewidth=0.8, label=f"prevalence {np.mean(labels):.3f}")
    for name, (r, p) in operating_points.items():
        ax.scatter([r], [p], color=THRESHOLD_COLOURS.get(name, "black"), zorder=3, label=f"{name} (R {r:.3f}, P {p:.3f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    return _save(fig, path)


def loss_curves(history: list[dict], path: Path, title: str) -> Path:
    """Per-epoch losses (every ``loss_*`` key), and mean D(x) / D(G(z)) where recorded; a note where there are no epochs."""
    if not history:  # a reference detector is fitted in one pass
        fig, ax = plt.subplots(figsize=(8, 1.6))
        ax.axis("off")
        ax.text(0.5, 0.5, "no training epochs: this model is fitted in one pass", ha="center", va="center")
        fig.suptitle(title, fontsize=10)
        return _save(fig, path)
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    losses = [k for k in history[0] if k.startswith("loss_")] if history else []
    for key in losses:
        left.plot(epochs, [h[key] for h in history], marker=".", label=key.replace("_", " "))
    left.set_xlabel("epoch")
    left.set_yscale("log" if losses and min(h[k] for h in history for k in losses) > 0 else "linear")
    left.legend(fontsize=8)
    for key, label in (("d_real", "mean D(x)"), ("d_fake", "mean D(G(z))")):
        if history and key in history[0]:
            right.plot(epochs, [h[key] for h in history], marker=".", label=label)
    right.set_xlabel("epoch")
    right.set_ylim(0, 1)
    right.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def selection_curve(curve: list[float], chosen: int, path: Path, title: str, signal: str) -> Path:
    """The selection set's AUROC after every epoch (models.selection), the kept epoch marked."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    epochs = np.arange(1, len(curve) + 1)
    ax.plot(epochs, curve, marker="o", ms=3, label=f"selection AUROC ({signal})")
    ax.axvline(chosen, color="tab:red", ls="--", lw=1, label=f"kept: epoch {chosen}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("AUROC, calibration normals vs selection anomalies")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, path)


def search_trajectory(target: np.ndarray, rows: dict[str, np.ndarray], path: Path, title: str, max_columns: int = 10) -> Path:
    """The target, then G(z_t) at evenly spaced search steps, one row per setting (e.g. low / high lr_θ).

    target: uint8 (1, C, H, W); rows: label -> uint8 (k+1, C, H, W) frames for t = 0..k.
    """
    n_steps = len(next(iter(rows.values())))
    steps = np.unique(np.linspace(0, n_steps - 1, min(max_columns, n_steps)).round().astype(int))
    fig, axes = plt.subplots(len(rows), len(steps) + 1, figsize=(1.1 * (len(steps) + 1), 1.35 * len(rows)), squeeze=False)
    for r, (label, frames) in enumerate(rows.items()):
        axes[r, 0].imshow(_tile(target, 1), cmap="gray", vmin=0, vmax=255)
        axes[r, 0].set_title("target" if r == 0 else "", fontsize=7)
        axes[r, 0].set_ylabel(label, fontsize=7)
        for c, t in enumerate(steps, start=1):
            axes[r, c].imshow(_tile(frames[t : t + 1], 1), cmap="gray", vmin=0, vmax=255)
            if r == 0:
                axes[r, c].set_title(f"t={t}", fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def anomaly_map_grid(images: np.ndarray, reconstructions: np.ndarray, maps: np.ndarray, captions: list[str], path: Path, title: str) -> Path:
    """Per sample, one row: the input, its reconstruction, and the anomaly map |x − x̂| as a heat map.

    images, reconstructions: uint8 (N, C, H, W); maps: float (N, H, W), all on one colour scale.
    """
    n = len(images)
    fig, axes = plt.subplots(n, 3, figsize=(3 * 1.3 + 0.6, n * 1.3 + 0.4), squeeze=False)
    vmax = float(maps.max()) if maps.size else 1.0
    for r in range(n):
        axes[r, 0].imshow(_tile(images[r : r + 1], 1), cmap="gray", vmin=0, vmax=255)
        axes[r, 1].imshow(_tile(reconstructions[r : r + 1], 1), cmap="gray", vmin=0, vmax=255)
        heat = axes[r, 2].imshow(maps[r], cmap="inferno", vmin=0, vmax=vmax)
        axes[r, 0].set_ylabel(captions[r], fontsize=6)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    for c, label in enumerate(("input x", "reconstruction x̂", "|x − x̂|")):
        axes[0, c].set_title(label, fontsize=7)
    fig.colorbar(heat, ax=axes[:, 2].tolist(), fraction=0.05, pad=0.04)
    fig.suptitle(title, fontsize=8)
    return _save(fig, path)


def series_timeline(series: dict[str, "object"], threshold: float, path: Path, title: str) -> Path:
    """One panel per series: point score over time, labelled anomalous points shaded, the threshold dashed.
    ``series`` maps a name to a frame with columns t, label, score."""
    fig, axes = plt.subplots(len(series), 1, figsize=(10, 2.2 * len(series)), squeeze=False)
    for ax, (name, frame) in zip(axes[:, 0], series.items()):
        t, score, label = frame["t"].to_numpy(), frame["score"].to_numpy(), frame["label"].to_numpy()
        ax.plot(t, score, lw=0.7, color="tab:blue")
        ax.fill_between(t, 0, 1, where=label.astype(bool), color="tab:red", alpha=0.25, transform=ax.get_xaxis_transform(), step="mid")
        ax.axhline(threshold, color="black", ls="--", lw=0.8)
        ax.set_ylabel("score")
        ax.set_title(name, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("time step")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)
