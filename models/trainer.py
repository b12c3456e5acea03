"""The one GAN trainer: every model's adversarial training (DCGAN, ADGAN, AnoGAN, EGBAD, GANomaly, MAD-GAN).

A model subclasses ``GANDetector``: it builds its networks in ``build_networks``, its optimisers in
``build_optimizers`` and does one adversarial update in ``train_step``. This class owns the rest: the epoch loop
with shuffling and noise drawn from streams seeded by (seed, epoch), a checkpoint after every epoch (weights,
optimiser states, history; no RNG state is needed) and resume from it, a clear stop on a non-finite loss, progress
bars, the fixed-noise sample grid, and sampling. A resumed run ends with exactly the weights of an uninterrupted one.

A checkpoint is identified by (trained_as, training_key, data_key): how the networks are trained, the settings that
shape training (inputs, network, training; never the scoring settings) and the training data. DCGAN, ADGAN and AnoGAN
train the same GAN, so a checkpoint of one resumes, or when complete is reused by, the others.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .base import Detector, InputSpec, ModelConfig, evaluating, to_uint8
from .device import Stream, derived_generator
from .errors import GadflowError
from .selection import EpochSelection, SelectionSet
from .settings import Settings, setting
from .storage import atomic_torch_save, data_key, load_checkpoint

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.pt"  # the checkpoint fit() keeps in its checkpoint folder


@dataclass(frozen=True)
class TrainingConfig(Settings):
    """How a GAN is trained: Adam on its networks, minibatches of normal samples, ``epochs`` passes."""

    seed: int = 0  # initial weights, shuffling, noise: every random stream of training derives from it
    epochs: int = setting(20, ge=1, le=10_000)
    batch_size: int = setting(64, ge=2, le=65_536)
    lr_g: float = setting(2e-4, gt=0.0, le=1.0)  # the generator's (and encoders') Adam step
    lr_d: float = setting(2e-4, gt=0.0, le=1.0)  # the discriminator's
    beta1: float = setting(0.5, ge=0.0, lt=1.0)  # Adam's first-moment decay (Radford et al.: 0.5)
    n_fixed_samples: int = setting(64, ge=1, le=4096)  # the fixed-noise sample grid recorded after every epoch
    # > 0: the model scores with an exponential moving average of the trained weights (GANDetector._update_average);
    # 0: with the weights of the last update. Training itself is the same either way.
    ema_decay: float = setting(0.0, ge=0.0, lt=1.0)


@dataclass
class EpochStats:
    epoch: int  # 1-based
    seconds: float
    stats: dict[str, float]  # epoch means of what train_step reports, e.g. loss_d, loss_g

    def as_dict(self) -> dict[str, float]:
        return {"epoch": self.epoch, **self.stats, "seconds": self.seconds}


EpochCallback = Callable[[EpochStats, np.ndarray], None]  # (record, fixed-noise samples as inputs)


class GANDetector(Detector):
    """A detector whose networks are a GAN: the resumable training loop around ``train_step``."""

    # Whether train_step draws from torch's global RNG (dropout masks): the loop then seeds it from the epoch's
    # stream inside a fork. The draw is part of the epoch stream, so it stays as each model has always had it.
    draws_global_rng: ClassVar[bool] = True

    def __init__(self, config: ModelConfig, inputs: InputSpec) -> None:
        super().__init__(config, inputs)
        with torch.random.fork_rng(devices=[]):  # initial weights depend on the seed only
            torch.manual_seed(config.training.seed)
            self.build_networks()
        for net in self.networks().values():
            net.to(self.device)
        self.history: list[EpochStats] = []
        self.selection_curve: list[float] = []  # the selection set's AUROC after each epoch (when fit selects)
        self._best: tuple[int, dict[str, dict[str, torch.Tensor]]] | None = None  # (epoch, CPU copy of its trained weights)
        self.selected: dict | None = None  # after fit with a selection set: what was chosen and by which signal
        # training.ema_decay > 0: the moving average of every trained parameter, {network: {name: tensor}}, and the
        # number of updates it has seen
        self._average: dict[str, dict[str, torch.Tensor]] | None = None
        self._average_updates = 0

    # --- what subclasses provide -------------------------------------------------------
    def build_networks(self) -> None:
        raise NotImplementedError

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def train_step(self, real: torch.Tensor, gen: torch.Generator, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        """One adversarial update on a model-space batch; returns scalar statistics (losses named loss_*)."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, noise_dim) -> a model-space sample (B, ...)."""
        raise NotImplementedError

    def trained_networks(self) -> dict[str, nn.Module]:
        """The networks adversarial training updates and a checkpoint holds (default: all of them)."""
        return self.networks()

    def after_training(self, inputs: np.ndarray, progress: bool) -> None:
        """Fits that follow the GAN on the same training inputs (an inverting encoder, score statistics)."""

    def fit_score_statistics(self, inputs: np.ndarray) -> None:
        """Statistics of the score that depend on the current weights, fitted on training inputs (default: none).
        Called before every selection measurement, so that each epoch is measured with the score it would have."""

    @property
    def trained_as(self) -> str:
        """How the networks are trained: models that train the same GAN share checkpoints."""
        return self.kind

    @property
    def epoch_selection(self) -> EpochSelection | None:
        """Which epoch's weights the model keeps (``config.selection``); None: the last, for models without the setting."""
        return getattr(self.config, "selection", None)

    @property
    def noise_dim(self) -> int:
        """Size of the flat latent vector ``decode`` takes."""
        return self.config.network.latent_dim

    def selection_key(self, selection: SelectionSet) -> str:
        """What a checkpoint's selection record must match: the set, and the settings of the score that measured it
        (every config field but the device and those that shape training, which the checkpoint identity holds)."""
        scoring = {k: v for k, v in self.config.to_dict().items() if k not in ("device", "network", "training", "selection")}
        return f"{selection.identity}/{hashlib.sha256(json.dumps(scoring, sort_keys=True).encode()).hexdigest()[:16]}"

    # --- helpers for subclasses ----------------------------------------------------------
    def adam(self, *modules: nn.Module, lr: float) -> torch.optim.Adam:
        params = [p for m in modules for p in m.parameters()]
        return torch.optim.Adam(params, lr=lr, betas=(self.config.training.beta1, 0.999))

    def noise(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """(n, noise_dim) standard-normal draws from ``gen`` (CPU), on the model's device."""
        return torch.randn(n, self.noise_dim, generator=gen).to(self.device)

    def nonsaturating_step(self, real: torch.Tensor, z: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        """The standard GAN update of ``self.generator`` against ``self.discriminator`` (D's logits: any shape).

        D first: maximise log D(x) + log(1 − D(G(z))) on G(z) detached; then G (non-saturating): maximise log D(G(z)).
        """
        fake = self.generator(z)
        logit_real = self.discriminator(real)
        logit_fake = self.discriminator(fake.detach())
        ones, zeros = torch.ones_like(logit_real), torch.zeros_like(logit_fake)
        loss_d = F.binary_cross_entropy_with_logits(logit_real, ones) + F.binary_cross_entropy_with_logits(logit_fake, zeros)
        optimizers["d"].zero_grad(set_to_none=True)
        loss_d.backward()
        optimizers["d"].step()

        loss_g = F.binary_cross_entropy_with_logits(self.discriminator(fake), torch.ones_like(logit_fake))
        optimizers["g"].zero_grad(set_to_none=True)
        loss_g.backward()
        optimizers["g"].step()
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(),
                "d_real": torch.sigmoid(logit_real).mean().detach(), "d_fake": torch.sigmoid(logit_fake).mean().detach()}

    def from_model_space(self, x: torch.Tensor) -> np.ndarray:
        """Model-space samples -> inputs: uint8 images (B, C, H, W) or float32 values."""
        return to_uint8(x) if self.is_image else x.detach().cpu().numpy().astype(np.float32)

    # --- sampling --------------------------------------------------------------------------
    def sample(self, n: int, seed: int, batch_size: int = 1024) -> np.ndarray:
        """n samples decoded from z ~ N(0, I), as inputs (quantised like real images). Deterministic per (seed, batch_size)."""
        gen = derived_generator(seed, Stream.SAMPLE)
        out = []
        with evaluating(self.networks().values()):
            for start in range(0, n, batch_size):
                out.append(self.from_model_space(self.decode(self.noise(min(batch_size, n - start), gen))))
        return np.concatenate(out) if out else np.zeros((0, *self.input_shape), self.input_dtype)

    # --- training ----------------------------------------------------------------------------
    def training_key(self) -> str:
        """What a checkpoint must match to be resumed: the inputs, the network and the training settings."""
        return json.dumps({"inputs": self.inputs.to_dict(), "network": self.config.network.to_dict(),
                           "training": self.config.training.to_dict()}, sort_keys=True)

    def checkpoint_identity(self, key: str) -> tuple[str, str, str]:
        """What a checkpoint must carry to be resumed (or reused) by this detector, for data with ``key``."""
        return (self.trained_as, self.training_key(), key)

    def fit(self, inputs: np.ndarray, checkpoint_dir: Path | None = None, on_epoch_end: EpochCallback | None = None, progress: bool = True,
            selection: SelectionSet | None = None) -> list[EpochStats]:
        """Train on normal inputs; resume from ``checkpoint_dir`` if it holds a checkpoint of this config and data.

        With a ``selection`` set, its AUROC under the model's own score is measured after every epoch and the
        networks end with the weights of the best epoch (models.selection); training itself is the same either way.
        With ``training.ema_decay`` > 0, the weights measured, drawn and kept are the moving average of the updates.
        """
        self.check_input(inputs)
        if len(inputs) < 2:
            raise GadflowError(f"need at least 2 training samples, got {len(inputs)}")
        cfg = self.config.training
        # Batches are gathered from the inputs as they are needed: a memory-mapped or lazily windowed
        # split is never copied whole.
        key = data_key(inputs, dtype=self.input_dtype)
        optimizers = self.build_optimizers()
        if cfg.ema_decay > 0:
            self._average, self._average_updates = self._parameters(), 0  # the average starts at the initial weights
        start_epoch = self._resume(checkpoint_dir, optimizers, key, selection)
        fixed_z = torch.randn(cfg.n_fixed_samples, self.noise_dim, generator=derived_generator(cfg.seed, Stream.FIXED_NOISE))
        for epoch in range(start_epoch, cfg.epochs):
            record = self._train_epoch(inputs, epoch, optimizers, progress)
            self.history.append(record)
            if selection is not None:
                with self._averaged_weights():
                    self.fit_score_statistics(inputs)
                    self._measure(selection, record.epoch)
            if checkpoint_dir is not None:
                self._save_checkpoint(Path(checkpoint_dir), epoch + 1, optimizers, key, selection)
            chosen = f"  selection AUROC {self.selection_curve[-1]:.4f}" if selection is not None else ""
            log.info("epoch %d/%d  %s%s  %.1fs", record.epoch, cfg.epochs, "  ".join(f"{k} {v:.4f}" for k, v in record.stats.items()), chosen, record.seconds)
            if on_epoch_end is not None:
                with evaluating(self.networks().values()), self._averaged_weights():
                    on_epoch_end(record, self.from_model_space(self.decode(fixed_z.to(self.device))))
        if self._average is not None:
            self._load_parameters(self._average)  # the model scores with the averaged weights
        if selection is not None:
            self._keep_best(selection)
        for net in self.networks().values():
            net.eval()
        self.after_training(inputs, progress)
        return self.history

    # --- the moving average of the weights (training.ema_decay) --------------------------------------
    def _parameters(self) -> dict[str, dict[str, torch.Tensor]]:
        """A copy of every trained parameter, on the model's device (buffers such as BatchNorm statistics are not included)."""
        return {name: {k: p.detach().clone() for k, p in net.named_parameters()} for name, net in self.trained_networks().items()}

    def _load_parameters(self, values: dict[str, dict[str, torch.Tensor]]) -> None:
        """Copy ``values`` into the trained parameters in place (the optimisers keep their references)."""
        with torch.no_grad():
            for name, net in self.trained_networks().items():
                for k, p in net.named_parameters():
                    p.copy_(values[name][k])

    def _update_average(self) -> None:
        """After update t (0-based): θ̄ ← d·θ̄ + (1 − d)·θ with d = min(ema_decay, (1 + t) / (10 + t)).

        The warm-up (TensorFlow's ExponentialMovingAverage with num_updates) lets a short schedule forget the initial
        weights: the average covers roughly the last tenth of the updates until 1 / (1 − ema_decay) is shorter.
        """
        t = self._average_updates
        weight = 1.0 - min(self.config.training.ema_decay, (1 + t) / (10 + t))
        with torch.no_grad():
            for name, net in self.trained_networks().items():
                for k, p in net.named_parameters():
                    self._average[name][k].lerp_(p.detach(), weight)
        self._average_updates = t + 1

    @contextlib.contextmanager
    def _averaged_weights(self):
        """Inside the block the trained networks hold the averaged parameters (no change without averaging)."""
        if self._average is None:
            yield
            return
        live = self._parameters()
        self._load_parameters(self._average)
        try:
            yield
        finally:
            self._load_parameters(live)

    # --- epoch selection (models.selection) --------------------------------------------------------
    def _measure(self, selection: SelectionSet, epoch: int) -> None:
        """Score the selection set with the current weights; keep a copy of them when its AUROC is the best so far."""
        auroc = selection.auroc(self.score(selection.normals), self.score(selection.anomalies))
        self.selection_curve.append(auroc)
        best = max((a for a in self.selection_curve[:-1] if math.isfinite(a)), default=-math.inf)
        if math.isfinite(auroc) and auroc > best:
            self._best = (epoch, {name: {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
                                  for name, net in self.trained_networks().items()})

    def _keep_best(self, selection: SelectionSet) -> None:
        """Load the best epoch's weights and record the choice; with no finite AUROC the last epoch's weights stay."""
        epochs = len(self.selection_curve)
        if self._best is None:
            log.warning("no epoch had a finite selection AUROC: keeping the last epoch's weights")
            chosen = epochs
        else:
            chosen, state = self._best
            for name, net in self.trained_networks().items():
                net.load_state_dict(state[name])
            log.info("kept the weights of epoch %d of %d (selection AUROC %.4f, %s signal)", chosen, epochs, self.selection_curve[chosen - 1], selection.signal)
        self.selected = {"signal": selection.signal, "epoch": chosen, "epochs": epochs,
                         "auroc": self.selection_curve[chosen - 1] if epochs else None, "curve": list(self.selection_curve),
                         "normals": len(selection.normals), "anomalies": len(selection.anomalies)}

    def _batch(self, inputs: np.ndarray, idx: torch.Tensor) -> torch.Tensor:
        """Rows idx (a CPU index tensor) of the inputs, gathered into a new tensor on the model's device."""
        return self.to_model_space(torch.from_numpy(np.asarray(inputs[idx.numpy()], dtype=self.input_dtype)))

    def _train_epoch(self, inputs: np.ndarray, epoch: int, optimizers: dict[str, torch.optim.Optimizer], progress: bool) -> EpochStats:
        cfg = self.config.training
        for net in self.trained_networks().values():
            net.train()
        gen = derived_generator(cfg.seed, epoch)  # shuffling and noise of this epoch only
        order = torch.randperm(len(inputs), generator=gen)
        batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        if len(batches) > 1 and len(batches[-1]) < 2:
            batches.pop()  # BatchNorm cannot train on a batch of one
        sums: dict[str, float] = {}
        start = time.perf_counter()
        bar = tqdm(batches, desc=f"{self.kind} epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False, disable=not progress or None)
        global_rng = contextlib.nullcontext()
        if self.draws_global_rng:  # dropout draws from the global RNG: seeded from this epoch's stream, restored after
            global_rng = torch.random.fork_rng(devices=[] if self.device.type == "cpu" else None)
        with global_rng:
            if self.draws_global_rng:
                torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
            for step, idx in enumerate(bar):
                stats = {k: float(v) for k, v in self.train_step(self._batch(inputs, idx), gen, optimizers).items()}
                bad = {k: v for k, v in stats.items() if not math.isfinite(v)}
                if bad:
                    raise GadflowError(f"non-finite loss at epoch {epoch + 1}, step {step + 1} ({bad}); lower the learning rates. Nothing after epoch {epoch} was saved")
                if self._average is not None:
                    self._update_average()
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.set_postfix({k: f"{v:.3f}" for k, v in stats.items() if k.startswith("loss")})
        return EpochStats(epoch + 1, time.perf_counter() - start, {k: v / max(len(batches), 1) for k, v in sums.items()})

    # --- checkpoints ----------------------------------------------------------------------------
    def _save_checkpoint(self, directory: Path, epochs_done: int, optimizers: dict[str, torch.optim.Optimizer], key: str,
                         selection: SelectionSet | None) -> None:
        trained_as, training_key, data = self.checkpoint_identity(key)
        record = None  # the selection so far, so that a resumed run selects exactly as an uninterrupted one
        if selection is not None:
            record = {"identity": self.selection_key(selection), "curve": json.dumps(self.selection_curve),
                      "best_epoch": self._best[0] if self._best else 0, "best_state": self._best[1] if self._best else {}}
        atomic_torch_save(directory / LAST_CHECKPOINT, {
            "trained_as": trained_as,
            "training_key": training_key,
            "data_key": data,
            "epochs_done": epochs_done,
            "state": {name: net.state_dict() for name, net in self.trained_networks().items()},
            "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
            "history": json.dumps([asdict(r) for r in self.history]),
            "selection": record,
            "average": None if self._average is None else {"state": self._average, "updates": self._average_updates},
        })

    def _resume(self, checkpoint_dir: Path | None, optimizers: dict[str, torch.optim.Optimizer], key: str, selection: SelectionSet | None) -> int:
        """Load the last checkpoint if this config made it on this data (and, when selecting, measured the same
        selection set after every epoch); return the next epoch."""
        if checkpoint_dir is None or not (Path(checkpoint_dir) / LAST_CHECKPOINT).exists():
            return 0
        path = Path(checkpoint_dir) / LAST_CHECKPOINT
        ckpt = load_checkpoint(path)
        if checkpoint_identity(ckpt) != self.checkpoint_identity(key):
            log.warning("%s was made with another model, config or data: training from scratch", path)
            return 0
        record = ckpt.get("selection")
        if selection is not None and selection_identity(ckpt) != self.selection_key(selection):
            log.warning("%s did not measure this selection set after its epochs: training from scratch", path)
            return 0
        for name, net in self.trained_networks().items():
            net.load_state_dict(ckpt["state"][name])
        for name, opt in optimizers.items():
            opt.load_state_dict(ckpt["optimizers"][name])
        self.history = [EpochStats(**r) for r in json.loads(ckpt["history"])]
        if self._average is not None:  # the training key holds ema_decay, so a checkpoint of this config carries the average
            average = ckpt["average"]
            self._average = {name: {k: v.to(self.device) for k, v in state.items()} for name, state in average["state"].items()}
            self._average_updates = int(average["updates"])
        if selection is not None:
            self.selection_curve = json.loads(record["curve"])
            self._best = (int(record["best_epoch"]), record["best_state"]) if record["best_epoch"] else None
        log.info("resumed from %s after epoch %d of %d", path, ckpt["epochs_done"], self.config.training.epochs)
        return int(ckpt["epochs_done"])


def selection_identity(checkpoint: dict) -> str | None:
    """The identity of the selection set a loaded checkpoint measured after its epochs (None: it selected nothing)."""
    record = checkpoint.get("selection")
    return None if record is None else str(record["identity"])


def checkpoint_identity(checkpoint: dict) -> tuple[str, str, str]:
    """(trained_as, training_key, data_key) of a loaded checkpoint: what must match for it to be resumed or reused."""
    return (str(checkpoint.get("trained_as")), str(checkpoint.get("training_key")), str(checkpoint.get("data_key")))
