"""Train step: fit one detector on the normal training split; checkpoints allow resume."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NONE

from models import get_detector
from models.checkpoint import LAST_CHECKPOINT, atomic_write_bytes, checkpoint_identity, data_key, load_checkpoint

from .config import TrainParams
from .files import atomic_write_text
from .plots import frames_as_images, image_grid, loss_curves
from .prepare import load_prepared

log = logging.getLogger(__name__)


def train_paths(out_dir: Path) -> dict[str, Path]:
    """Layout of an experiment's training outputs (``train/`` persists across DVC reruns for resume)."""
    return {
        "checkpoints": out_dir / "train" / "checkpoints",
        "samples": out_dir / "train" / "samples",
        "history": out_dir / "train" / "history.json",
        "losses": out_dir / "train" / "losses.png",
        "model": out_dir / "model",
    }


def reuse_finished_gan(detector, train_inputs: np.ndarray, paths: dict[str, Path], out_dir: Path) -> Path | None:
    """Copy a sibling experiment's finished checkpoint of this very GAN into ``paths``, if there is one.

    DCGAN, ADGAN and AnoGAN train identical networks and differ only in scoring, so experiments whose
    training settings and data match (the checkpoint identity: trained_as, training_key, data_key) need
    one training between them. Training is deterministic, so the result equals training again; only time
    is saved. Never replaces a checkpoint of this experiment's own.
    """
    own = paths["checkpoints"] / LAST_CHECKPOINT
    if own.exists():
        return None
    wanted = detector.checkpoint_identity(data_key(train_inputs))
    for candidate in sorted(out_dir.parent.glob(f"*/train/checkpoints/{LAST_CHECKPOINT}")):
        ckpt = load_checkpoint(candidate)
        if checkpoint_identity(ckpt) == wanted and int(ckpt["epochs_done"]) == detector.config.epochs:
            atomic_write_bytes(own, candidate.read_bytes())
            for grid in sorted((candidate.parent.parent / "samples").glob("epoch_*.png")):
                atomic_write_bytes(paths["samples"] / grid.name, grid.read_bytes())
            log.info("reusing the finished GAN of %s (same training settings and data): no training needed", candidate.parent.parent.parent.name)
            return candidate
    return None


@task(cache_policy=NONE, persist_result=False)
def train_model(name: str, params: TrainParams, data_dir: Path, out_dir: Path) -> Path:
    """Train ``params.model`` on the normal training samples (images, rows or windows); return the saved model folder."""
    data = load_prepared(data_dir)
    detector_cls = get_detector(params.model)
    frames = {"frame_shape": tuple(data.schema["frame_shape"])} if "frame_shape" in data.schema else {}  # image sequences
    detector = detector_cls(detector_cls.config_for(data.input_shape, **params.detector_fields(), **frames))
    paths = train_paths(out_dir)
    log.info("%s: training %s on %d samples %s, device %s", name, params.model, len(data.train), data.input_shape, detector.device)

    def save_epoch_grid(record, samples: np.ndarray) -> None:
        if frames:  # image sequences: one row of frames per generated window, pixels [0, 1] -> uint8
            seq_len = samples.shape[1]
            samples = frames_as_images(samples[:8], frames["frame_shape"])  # (8·seq_len, C, H, W)
            title = f"{name}: generated frame sequences after epoch {record.epoch} (one window per row)"
            image_grid(samples, paths["samples"] / f"epoch_{record.epoch:03d}.png", title, ncol=seq_len)
            return
        if not detector.is_image:  # feature rows and windows have no picture; the losses are in history.json
            return
        losses = ", ".join(f"{k.removeprefix('loss_')} {v:.3f}" for k, v in record.as_dict().items() if k.startswith("loss_"))
        title = f"{name}: fixed-noise samples after epoch {record.epoch} (loss {losses})"
        image_grid(samples, paths["samples"] / f"epoch_{record.epoch:03d}.png", title)

    train_inputs = data.train  # series: a lazy WindowStack, gathered batch by batch
    reuse_finished_gan(detector, train_inputs, paths, out_dir)
    history = detector.fit(train_inputs, checkpoint_dir=paths["checkpoints"], on_epoch_end=save_epoch_grid)
    for stale in paths["samples"].glob("epoch_*.png"):  # grids left by an earlier, longer run
        if int(stale.stem.split("_")[1]) > params.epochs:
            stale.unlink()
    records = [r.as_dict() for r in history]
    atomic_write_text(paths["history"], json.dumps(records, indent=1))
    loss_curves(records, paths["losses"], f"{name}: training losses")
    detector.save(paths["model"])
    if data.kind == "tabular":  # the fitted scaler and one-hot vocabularies travel with the weights
        from models.tabular import PREPROCESSOR_FILE

        atomic_write_text(paths["model"] / PREPROCESSOR_FILE, (data_dir / PREPROCESSOR_FILE).read_text())
    if data.kind == "series":  # the scaling / PCA fitted on the training series travels with the weights
        from models.series_transform import TRANSFORM_FILE, WINDOWING_FILE

        atomic_write_text(paths["model"] / TRANSFORM_FILE, (data_dir / TRANSFORM_FILE).read_text())
        atomic_write_text(paths["model"] / WINDOWING_FILE, json.dumps({**data.schema["windowing"], "input_channels": data.schema["input_channels"]}))
    return paths["model"]
