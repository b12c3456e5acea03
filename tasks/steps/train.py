"""Train step: fit one detector on the normal training split; writes ``train/`` (checkpoints, sample grids, losses)
and ``model/`` (the weights and the files the model carries). A rerun resumes from the last checkpoint."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import numpy as np

from models.errors import GadflowError
from models.registry import get_detector
from models.selection import SIGNALS, SelectionSet, subset, synthetic_anomalies
from models.storage import atomic_write_bytes, atomic_write_text, data_key, load_checkpoint, staged_dir
from models.trainer import LAST_CHECKPOINT, checkpoint_identity, selection_identity

from ..adapters import load_prepared
from ..layout import ExperimentLayout, prepared_dir
from ..reports.plots import image_grid, loss_curves

if TYPE_CHECKING:
    from pathlib import Path

    from ..params import Experiment

log = logging.getLogger(__name__)


def selection_set(detector, data) -> SelectionSet | None:
    """The set the model's epoch is selected on (models.selection), or None when it keeps the last epoch.

    Normals: a seeded subset of the calibration split. Anomalies: synthetic ones made from training normals
    (label_free) or the validation split of anomaly-class training samples (validation); never the test split.
    """
    choice = detector.epoch_selection
    if choice is None or choice.epoch == "last":
        return None
    seed = detector.config.training.seed
    normals = subset(data.calib, choice.max_normals, seed)
    if choice.signal == "label_free":
        anomalies = synthetic_anomalies(data.train, choice.n_synthetic, seed)
    elif data.val_anomalies is None or len(data.val_anomalies) == 0:
        raise GadflowError("selection.signal is 'validation' but these data have no validation split of anomaly-class samples; use 'label_free'")
    else:
        anomalies = subset(data.val_anomalies, choice.n_synthetic, seed)
    return SelectionSet(normals, np.asarray(anomalies, dtype=detector.input_dtype), choice.signal)


def selected_record(detector) -> dict:
    """Which epoch's weights the model keeps and what chose it, as train/selection.json records it for the report."""
    if not detector.capabilities.generator:
        return {"rule": "none", "signal": None, "note": "no epochs: fitted in one pass on the training normals"}
    epochs = detector.config.training.epochs
    if detector.selected is None:
        return {"rule": "last", "signal": None, "epoch": epochs, "epochs": epochs, "note": "the last epoch (training.epochs in params.yaml)"}
    chosen = detector.selected
    return {"rule": "best", **chosen, "evidence": SIGNALS[chosen["signal"]],
            "note": f"epoch {chosen['epoch']} of {chosen['epochs']}: the highest AUROC of calibration normals against {SIGNALS[chosen['signal']]}"}


def reuse_finished_gan(detector, train_inputs: np.ndarray, layout: ExperimentLayout, selection: SelectionSet | None = None) -> Path | None:
    """Copy a sibling experiment's finished checkpoint of this very GAN into ``layout``, if there is one.

    DCGAN, ADGAN and AnoGAN train identical networks and differ only in scoring, so experiments whose
    training settings and data match (the checkpoint identity: trained_as, training_key, data_key) need
    one training between them. Training is deterministic, so the result equals training again; only time
    is saved. Never replaces a checkpoint of this experiment's own. A model that selects its epoch reuses only a
    checkpoint that measured the same selection set after every epoch.
    """
    own = layout.checkpoints / LAST_CHECKPOINT
    if own.exists():
        return None
    wanted = detector.checkpoint_identity(data_key(train_inputs, dtype=detector.input_dtype))
    for candidate in sorted(layout.root.parent.glob(f"*/{own.relative_to(layout.root)}")):
        ckpt = load_checkpoint(candidate)
        measured = selection is None or selection_identity(ckpt) == detector.selection_key(selection)
        if checkpoint_identity(ckpt) == wanted and int(ckpt["epochs_done"]) == detector.config.training.epochs and measured:
            atomic_write_bytes(own, candidate.read_bytes())
            sibling = ExperimentLayout(candidate.parents[2])
            for grid in sorted(sibling.samples.glob("epoch_*.png")):
                atomic_write_bytes(layout.samples / grid.name, grid.read_bytes())
            log.info("reusing the finished GAN of %s (same training settings and data): no training needed", sibling.root.name)
            return candidate
    return None


def train(exp: Experiment, layout: ExperimentLayout) -> Path:
    """Train the experiment's model on its normal training samples; return the saved model folder."""
    data = load_prepared(prepared_dir(exp.data))
    detector = get_detector(exp.model.kind)(exp.model, data.input_spec)
    log.info("%s: training %s on %d samples %s, device %s", exp.name, exp.model.kind, len(data.train), data.input_spec.shape, detector.device)

    def save_epoch_grid(record, samples: np.ndarray) -> None:
        grid = data.sample_grid(samples)  # images, columns, a note; None where the data have no picture
        if grid is None:
            return
        images, ncol, note = grid
        losses = ", ".join(f"{k.removeprefix('loss_')} {v:.3f}" for k, v in record.as_dict().items() if k.startswith("loss_"))
        image_grid(images, layout.sample_grid(record.epoch), f"{exp.name}: fixed-noise samples after epoch {record.epoch}{note} (loss {losses})", ncol=ncol)

    train_inputs = data.train  # series: a lazy WindowStack, gathered batch by batch
    if not detector.capabilities.generator:  # a reference detector has no checkpoints or epochs: it fits in seconds
        history = detector.fit(train_inputs)
    else:
        selection = selection_set(detector, data)
        reuse_finished_gan(detector, train_inputs, layout, selection)
        history = detector.fit(train_inputs, checkpoint_dir=layout.checkpoints, on_epoch_end=save_epoch_grid, selection=selection)
    atomic_write_text(layout.selection, json.dumps(selected_record(detector), indent=1))
    epochs = exp.model.training.epochs if detector.capabilities.generator else 0  # a reference fits without epochs
    for stale in layout.samples.glob("epoch_*.png"):  # grids left by an earlier, longer run (or by a GAN before)
        if int(stale.stem.split("_")[1]) > epochs:
            stale.unlink()
    records = [r.as_dict() for r in history]
    atomic_write_text(layout.history, json.dumps(records, indent=1))
    loss_curves(records, layout.losses, f"{exp.name}: training losses")
    with staged_dir(layout.model_dir) as staging:  # the weights and what the model carries, swapped in together
        detector.save(staging)
        data.ship(staging)
    return layout.model_dir
