"""DCGANDetector: scoring, determinism, persistence, resume after interruption, non-finite losses, sampling.

Every detector here is tiny (16x16 grey images, 4 base channels) and trains for a few epochs on 64 images.
At 16x16 both networks have BatchNorm layers (at 8x8 the discriminator would have none).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from models.base import MODEL_FILE
from models.dcgan import DCGANConfig, DCGANDetector
from models.errors import GadflowError
from models.inputs import InputSpec
from models.registry import load_detector
from models.threshold import Calibration
from models.trainer import LAST_CHECKPOINT
from tests.helpers.detectors import merged

BASE = {"device": "cpu", "network": {"latent_dim": 8, "base_channels": 4}, "training": {"epochs": 2, "batch_size": 16, "n_fixed_samples": 4}}
INPUTS = InputSpec("image", (1, 16, 16))
CHECKPOINT_KEYS = {"trained_as", "training_key", "data_key", "epochs_done", "state", "optimizers", "history", "selection", "average"}


def config(changes: dict | None = None) -> DCGANConfig:
    """BASE with ``changes`` merged over it (nested like params.yaml's model section)."""
    return DCGANConfig.from_dict(merged(BASE, changes or {}))


def images(n: int = 64, seed: int = 0) -> np.ndarray:
    """uint8 (n, 1, 16, 16): a bright blob at a random place on a dark, noisy background."""
    rng = np.random.default_rng(seed)
    out = rng.integers(0, 40, size=(n, 1, 16, 16)).astype(np.uint8)
    for img, (r, c) in zip(out, rng.integers(2, 11, size=(n, 2))):
        img[0, r : r + 4, c : c + 4] = 230
    return out


def trained(cfg: DCGANConfig | None = None, data: np.ndarray | None = None, **fit_kwargs) -> DCGANDetector:
    det = DCGANDetector(cfg or config(), INPUTS)
    det.fit(images() if data is None else data, progress=False, **fit_kwargs)
    return det


def assert_same_weights(a: DCGANDetector, b: DCGANDetector) -> None:
    for name, net in a.networks().items():
        other = b.networks()[name].state_dict()
        state = net.state_dict()
        assert state.keys() == other.keys()
        for key, tensor in state.items():
            assert torch.equal(tensor, other[key]), f"{name}.{key} differs"


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def detector() -> DCGANDetector:
    """One trained detector shared by read-only tests."""
    return trained()


# --- scoring -------------------------------------------------------------------------------------------
def test_scores_shape_dtype_and_range(detector):
    x = images(37, seed=1)
    scores = detector.score(x)
    assert scores.shape == (37,)
    assert scores.dtype == np.float64
    assert np.isfinite(scores).all()
    assert ((scores >= 0) & (scores <= 1)).all()
    assert scores.std() > 0


def test_scores_do_not_depend_on_the_rest_of_the_batch(detector):
    x = images(20, seed=2)
    shifted = np.clip(images(30, seed=3).astype(int) + 100, 0, 255).astype(np.uint8)
    alone = detector.score(x)
    together = detector.score(np.concatenate([x, shifted]))
    np.testing.assert_allclose(together[: len(x)], alone, rtol=0, atol=1e-6)
    np.testing.assert_allclose(detector.score(x, batch_size=3), alone, rtol=0, atol=1e-6)
    np.testing.assert_allclose(detector.score(x[::-1])[::-1], alone, rtol=0, atol=1e-6)


def test_scoring_changes_no_state_and_restores_modes(detector):
    before = detector.model_id
    detector.discriminator.train()
    try:
        detector.score(images(16, seed=4))
        assert detector.discriminator.training
    finally:
        detector.discriminator.eval()
    assert detector.model_id == before  # BatchNorm running statistics untouched


def test_score_rejects_wrong_shapes(detector):
    with pytest.raises(GadflowError, match=r"\(N, 1, 16, 16\)"):
        detector.score(np.zeros((4, 1, 8, 8), np.uint8))
    with pytest.raises(GadflowError):
        detector.score(np.zeros((4, 16, 16), np.uint8))


def test_empty_score():
    assert DCGANDetector(config(), INPUTS).score(np.zeros((0, 1, 16, 16), np.uint8)).shape == (0,)


# --- training ------------------------------------------------------------------------------------------
def test_fit_history_and_training_changes_the_model():
    det = DCGANDetector(config(), INPUTS)
    untrained = det.model_id
    history = det.fit(images(), progress=False)
    assert [r.epoch for r in history] == [1, 2]
    for r in history:
        assert all(math.isfinite(r.stats[k]) for k in ("loss_d", "loss_g", "d_real", "d_fake"))
        assert 0 <= r.stats["d_real"] <= 1 and 0 <= r.stats["d_fake"] <= 1
    assert det.model_id != untrained
    assert not det.generator.training and not det.discriminator.training


def test_same_seed_gives_bit_identical_models():
    torch.manual_seed(11)  # the global RNG must not matter
    a = trained()
    torch.manual_seed(22)
    b = trained()
    assert_same_weights(a, b)
    assert a.model_id == b.model_id
    x = images(16, seed=5)
    np.testing.assert_array_equal(a.score(x), b.score(x))
    c = trained(config({"training": {"seed": 1}}))
    assert c.model_id != a.model_id


def test_fit_rejects_bad_input():
    det = DCGANDetector(config(), INPUTS)
    with pytest.raises(GadflowError, match="at least 2"):
        det.fit(images(1), progress=False)
    with pytest.raises(GadflowError, match="does not match"):
        det.fit(np.zeros((8, 3, 16, 16), np.uint8), progress=False)


def test_epoch_callback_gets_fixed_noise_samples():
    seen = []
    trained(on_epoch_end=lambda record, samples: seen.append((record.epoch, samples.dtype, samples.shape)))
    assert seen == [(1, np.uint8, (4, 1, 16, 16)), (2, np.uint8, (4, 1, 16, 16))]


# --- resume after interruption -------------------------------------------------------------------------
class Interrupt:
    """on_epoch_end callback that presses Ctrl-C after a given epoch."""

    def __init__(self, after_epoch: int) -> None:
        self.after_epoch = after_epoch

    def __call__(self, record, samples) -> None:
        if record.epoch == self.after_epoch:
            raise KeyboardInterrupt


def test_resume_after_interruption_is_bit_identical(tmp_path, caplog):
    cfg = config({"training": {"epochs": 3}})
    data = images()
    reference = trained(cfg, data, checkpoint_dir=tmp_path / "A")

    with pytest.raises(KeyboardInterrupt):
        trained(cfg, data, checkpoint_dir=tmp_path / "B", on_epoch_end=Interrupt(after_epoch=1))
    checkpoint = torch.load(tmp_path / "B" / LAST_CHECKPOINT, weights_only=True)
    assert checkpoint["epochs_done"] == 1
    assert set(checkpoint) == CHECKPOINT_KEYS  # the one trainer's format
    assert set(checkpoint["state"]) == {"generator", "discriminator"} and set(checkpoint["optimizers"]) == {"d", "g"}
    assert checkpoint["trained_as"] == "dcgan"

    epochs_run = []
    with caplog.at_level(logging.INFO, logger="models.trainer"):
        resumed = trained(cfg, data, checkpoint_dir=tmp_path / "B", on_epoch_end=lambda r, s: epochs_run.append(r.epoch))
    assert epochs_run == [2, 3]  # epoch 1 was not trained again
    assert any("resumed" in rec.getMessage() for rec in caplog.records)
    assert [r.epoch for r in resumed.history] == [1, 2, 3]
    assert [r.stats["loss_d"] for r in resumed.history] == [r.stats["loss_d"] for r in reference.history]
    assert_same_weights(resumed, reference)
    assert resumed.model_id == reference.model_id
    assert torch.load(tmp_path / "B" / LAST_CHECKPOINT, weights_only=True)["epochs_done"] == 3


@pytest.mark.parametrize("kind, warm_start", [("adgan", None), ("adgan", {"steps": 20}), ("anogan", None)])
def test_latent_search_models_resume_bit_identically(tmp_path, kind, warm_start):
    """ADGAN and AnoGAN train the DCGAN on the one trainer: an interrupted run resumes to the same weights (the
    warm-start encoder, fitted after the GAN, too)."""
    from models.registry import get_detector

    cls = get_detector(kind)
    cfg = cls.config_cls.from_dict(merged(BASE, {"training": {"epochs": 3}, "search": {"steps": 2, "lr_theta": 0.0}, "warm_start": warm_start}))
    data = images()
    reference = cls(cfg, INPUTS)
    reference.fit(data, checkpoint_dir=tmp_path / "A", progress=False)
    with pytest.raises(KeyboardInterrupt):
        cls(cfg, INPUTS).fit(data, checkpoint_dir=tmp_path / "B", on_epoch_end=Interrupt(after_epoch=1), progress=False)
    checkpoint = torch.load(tmp_path / "B" / LAST_CHECKPOINT, weights_only=True)
    assert checkpoint["epochs_done"] == 1 and checkpoint["trained_as"] == "dcgan"
    assert set(checkpoint["state"]) == {"generator", "discriminator"}  # the encoder is not part of GAN training
    epochs_run = []
    resumed = cls(cfg, INPUTS)
    resumed.fit(data, checkpoint_dir=tmp_path / "B", on_epoch_end=lambda r, s: epochs_run.append(r.epoch), progress=False)
    assert epochs_run == [2, 3]
    assert ("encoder" in resumed.networks()) == (warm_start is not None)
    assert_same_weights(resumed, reference)
    assert resumed.model_id == reference.model_id


def test_finished_checkpoint_trains_nothing(tmp_path):
    cfg, data = config(), images()
    first = trained(cfg, data, checkpoint_dir=tmp_path)
    calls = []
    again = trained(cfg, data, checkpoint_dir=tmp_path, on_epoch_end=lambda r, s: calls.append(r.epoch))
    assert calls == []
    assert_same_weights(first, again)
    assert len(again.history) == cfg.training.epochs


@pytest.mark.parametrize("change", ["config", "data"])
def test_foreign_checkpoint_is_not_resumed(tmp_path, caplog, change):
    data = images()
    with pytest.raises(KeyboardInterrupt):
        trained(config({"training": {"lr_d": 1e-3}}), data, checkpoint_dir=tmp_path, on_epoch_end=Interrupt(after_epoch=1))
    cfg, new_data = (config(), data) if change == "config" else (config({"training": {"lr_d": 1e-3}}), images(seed=9))

    epochs_run = []
    with caplog.at_level(logging.WARNING, logger="models.trainer"):
        det = trained(cfg, new_data, checkpoint_dir=tmp_path, on_epoch_end=lambda r, s: epochs_run.append(r.epoch))
    assert epochs_run == [1, 2]
    warnings = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    assert any("training from scratch" in rec.getMessage() for rec in warnings)
    assert_same_weights(det, trained(cfg, new_data))  # the same as a run without any checkpoint


def test_a_finished_gan_is_reused_by_a_detector_that_only_scores_differently(tmp_path):
    """DCGAN, ADGAN and AnoGAN train identically: ADGAN resumes a finished DCGAN checkpoint with 0 epochs."""
    from models.latent_gans import ADGANConfig, ADGANDetector

    data = images()
    first = trained(config(), data, checkpoint_dir=tmp_path)
    epochs_run = []
    adgan = ADGANDetector(ADGANConfig.from_dict({**BASE, "search": {"steps": 2, "lr_theta": 0.0}}), INPUTS)
    adgan.fit(data, checkpoint_dir=tmp_path, progress=False, on_epoch_end=lambda r, s: epochs_run.append(r.epoch))
    assert epochs_run == []
    assert_same_weights(adgan, first)


def test_spectral_norm_discriminator_trains_resumes_and_scores_per_image(tmp_path):
    cfg, data = config({"training": {"epochs": 3}, "network": {"discriminator_norm": "spectral"}}), images()
    reference = trained(cfg, data)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in reference.discriminator.modules())
    with pytest.raises(KeyboardInterrupt):
        trained(cfg, data, checkpoint_dir=tmp_path, on_epoch_end=Interrupt(after_epoch=1))
    resumed = trained(cfg, data, checkpoint_dir=tmp_path)
    assert_same_weights(resumed, reference)  # the power-iteration vectors are restored too

    batch = images(n=10, seed=4)
    scores = reference.score(batch)
    assert np.array_equal(reference.score(batch[3:4]), scores[3:4])  # no batch statistics in D
    reference.save(tmp_path / "model")
    assert np.array_equal(load_detector(tmp_path / "model").score(batch), scores)


# --- non-finite losses ---------------------------------------------------------------------------------
def nan_discriminator(det: DCGANDetector, monkeypatch) -> None:
    """Make D's logits NaN (still differentiable, so the optimiser steps run)."""
    original = det.discriminator.forward
    monkeypatch.setattr(det.discriminator, "forward", lambda x: original(x) * float("nan"))


def test_non_finite_loss_stops_training_without_a_checkpoint(tmp_path, monkeypatch):
    det = DCGANDetector(config(), INPUTS)
    nan_discriminator(det, monkeypatch)
    with pytest.raises(GadflowError, match="non-finite"):
        det.fit(images(), checkpoint_dir=tmp_path, progress=False)
    assert not (tmp_path / LAST_CHECKPOINT).exists()


def test_non_finite_loss_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    det = DCGANDetector(config({"training": {"epochs": 3}}), INPUTS)

    def break_after_first_epoch(record, samples):
        if record.epoch == 1:
            nan_discriminator(det, monkeypatch)

    with pytest.raises(GadflowError, match="non-finite loss at epoch 2"):
        det.fit(images(), checkpoint_dir=tmp_path, on_epoch_end=break_after_first_epoch, progress=False)
    ckpt = torch.load(tmp_path / LAST_CHECKPOINT, weights_only=True)
    assert ckpt["epochs_done"] == 1
    for net in ("generator", "discriminator"):
        assert all(torch.isfinite(t).all() for t in ckpt["state"][net].values() if t.is_floating_point())
    one_epoch = trained(config({"training": {"epochs": 1}}))
    for key, tensor in one_epoch.discriminator.state_dict().items():
        assert torch.equal(ckpt["state"]["discriminator"][key], tensor), key


# --- persistence -----------------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path, detector):
    path = detector.save(tmp_path / "model")
    assert path == tmp_path / "model" / MODEL_FILE
    x = images(25, seed=6)
    for loaded in (DCGANDetector.load(tmp_path / "model", device="cpu"), load_detector(tmp_path / "model", device="cpu")):
        assert isinstance(loaded, DCGANDetector)
        assert loaded.config == detector.config
        assert loaded.inputs == detector.inputs
        assert loaded.model_id == detector.model_id
        np.testing.assert_array_equal(loaded.score(x), detector.score(x))
        np.testing.assert_array_equal(loaded.sample(5, seed=1), detector.sample(5, seed=1))


def test_load_model_of_another_kind(tmp_path, detector):
    detector.save(tmp_path)
    payload = torch.load(tmp_path / MODEL_FILE, weights_only=True)
    payload["kind"] = "vae"
    torch.save(payload, tmp_path / MODEL_FILE)
    with pytest.raises(GadflowError, match="'vae' model, not 'dcgan'"):
        DCGANDetector.load(tmp_path, device="cpu")
    with pytest.raises(GadflowError, match="unknown model 'vae'"):
        load_detector(tmp_path, device="cpu")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing"])
def test_load_corrupt_model_file(tmp_path, detector, damage):
    detector.save(tmp_path)
    path = tmp_path / MODEL_FILE
    if damage == "garbage":
        path.write_bytes(b"definitely not a torch checkpoint")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-200])
    else:
        path.unlink()
    with pytest.raises(GadflowError, match=MODEL_FILE):
        DCGANDetector.load(tmp_path, device="cpu")


def test_load_tampered_weights(tmp_path, detector):
    detector.save(tmp_path)
    payload = torch.load(tmp_path / MODEL_FILE, weights_only=True)
    payload["state"]["discriminator"]["head.bias"] += 1.0
    torch.save(payload, tmp_path / MODEL_FILE)
    with pytest.raises(GadflowError, match="model_id"):
        DCGANDetector.load(tmp_path, device="cpu")


def test_calibration_of_another_model_is_refused(tmp_path, detector):
    other = DCGANDetector(config({"training": {"seed": 5}}), INPUTS)
    assert other.model_id != detector.model_id
    path = tmp_path / "threshold.json"
    Calibration(other.model_id, 0.05, "calibration", {"calibration": 0.5}, [0.1, 0.2]).save(path)
    with pytest.raises(GadflowError, match="threshold belongs to model"):
        Calibration.load(path, expected_model_id=detector.model_id)
    assert Calibration.load(path, expected_model_id=other.model_id).model_id == other.model_id


# --- sampling -------------------------------------------------------------------------------------------
def test_sample_is_uint8_and_deterministic_per_seed(detector):
    a = detector.sample(12, seed=3)
    assert a.dtype == np.uint8 and a.shape == (12, 1, 16, 16)
    np.testing.assert_array_equal(a, detector.sample(12, seed=3))
    assert not np.array_equal(a, detector.sample(12, seed=4))
    assert len(np.unique(a.reshape(12, -1), axis=0)) > 1  # not one image repeated
    assert detector.sample(0, seed=3).shape == (0, 1, 16, 16)


def test_sample_leaves_state_and_mode_alone(detector):
    before = detector.model_id
    detector.generator.train()
    try:
        detector.sample(8, seed=0)
        assert detector.generator.training
    finally:
        detector.generator.eval()
    assert detector.model_id == before


def test_score_rejects_non_uint8_pixels(detector):
    floats = images(4).astype(np.float32) / 255.0  # a common mistake: pixels already scaled to [0, 1]
    with pytest.raises(GadflowError, match="uint8"):
        detector.score(floats)
