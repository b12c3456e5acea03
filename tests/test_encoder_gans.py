"""BiGAN/EGBAD and GANomaly: the score formulas, the training objectives' bookkeeping, resume after an
interruption, non-finite losses, anomaly maps, config checks and the DCGAN weight init of the image networks."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from models.egbad import EGBADConfig, EGBADDetector
from models.errors import GadflowError
from models.ganomaly import GANomalyConfig, GANomalyDetector
from models.inputs import InputSpec
from models.madgan import MADGANConfig, MADGANDetector
from models.settings import SettingsError
from models.trainer import LAST_CHECKPOINT
from tests.helpers.data import sine_windows
from tests.helpers.detectors import TINY as TINY_MODELS
from tests.helpers.detectors import merged

# (inputs, the model config's settings nested like params.yaml's model section)
TABULAR = (InputSpec("tabular", (5,)), {"device": "cpu", "network": {"latent_dim": 3, "hidden_dims": [16, 8]},
                                        "training": {"epochs": 3, "batch_size": 16, "lr_g": 1e-3, "lr_d": 1e-3}})
IMAGE = (InputSpec("image", (3, 16, 16)), {"device": "cpu", "network": {"latent_dim": 8, "base_channels": 4},
                                           "training": {"epochs": 2, "batch_size": 16, "n_fixed_samples": 4}})
WINDOW = (InputSpec("window", (10, 4)), merged(TINY_MODELS["madgan"], {"device": "cpu", "training": {"epochs": 3}}))
MODELS = [(EGBADDetector, EGBADConfig), (GANomalyDetector, GANomalyConfig)]


def make(cls, case: tuple[InputSpec, dict], changes: dict | None = None, inputs: InputSpec | None = None):
    """A fresh ``cls`` detector: the case's settings with ``changes`` merged over them, for the case's inputs (or ``inputs``)."""
    spec, settings = case
    return cls(cls.config_cls.from_dict(merged(settings, changes or {})), inputs or spec)


def windows(n: int, seed: int) -> np.ndarray:
    return sine_windows(n, seed, seq_len=10, channels=4)


def rows(n: int = 80, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, size=(n, 5)).astype(np.float32)


def rgb(n: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3, 16, 16), dtype=np.uint8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def same_weights(a, b) -> bool:
    return all(torch.equal(t, b.networks()[name].state_dict()[k]) for name, net in a.networks().items() for k, t in net.state_dict().items())


# --- scores ------------------------------------------------------------------------------------------------
def test_egbad_score_is_the_weighted_residual_and_feature_distance():
    det = make(EGBADDetector, TABULAR)
    det.fit(rows(), progress=False)
    x = torch.from_numpy(rows(7, seed=1))
    with torch.no_grad():
        z = det.encoder(x)
        rec = det.generator(z)
        residual = (x - rec).abs().sum(1)
        fm = (det.discriminator.features(x, z) - det.discriminator.features(rec, z)).abs().sum(1)
    np.testing.assert_allclose(det.score(x.numpy()), (0.9 * residual + 0.1 * fm).numpy(), rtol=1e-5)
    det.config = det.config.replace(alpha=1.0)  # configs are frozen: a detector is given a new one
    np.testing.assert_allclose(det.score(x.numpy()), residual.numpy(), rtol=1e-5)
    det.config = det.config.replace(alpha=0.0, score_method="cross_entropy")
    with torch.no_grad():
        expected = torch.nn.functional.softplus(-det.discriminator(x, z))  # −log D(x, E(x))
    np.testing.assert_allclose(det.score(x.numpy()), expected.numpy(), rtol=1e-5)


def test_ganomaly_score_is_the_latent_consistency_error():
    det = make(GANomalyDetector, TABULAR)
    det.fit(rows(), progress=False)
    x = torch.from_numpy(rows(7, seed=1))
    with torch.no_grad():
        z = det.encoder_in(x)
        z_hat = det.encoder_out(det.decoder(z))
    np.testing.assert_allclose(det.score(x.numpy()), (z - z_hat).pow(2).mean(1).numpy(), rtol=1e-5)


def test_ganomaly_anomaly_maps_are_the_contextual_residual():
    det = make(GANomalyDetector, IMAGE)
    det.fit(rgb(), progress=False)
    images = rgb(5, seed=2)
    reconstructions, maps = det.anomaly_maps(images)
    assert reconstructions.shape == images.shape and reconstructions.dtype == np.uint8
    assert maps.shape == (5, 16, 16) and (maps >= 0).all() and (maps <= 2).all()
    x = images.astype(np.float32) / 127.5 - 1
    x_hat = reconstructions.astype(np.float32) / 127.5 - 1  # quantised, so equal to 1/255 per channel
    np.testing.assert_allclose(maps, np.abs(x - x_hat).mean(1), atol=2 / 255)
    with pytest.raises(GadflowError, match="image"):
        make(GANomalyDetector, TABULAR).anomaly_maps(rows(3))


@pytest.mark.parametrize("cls, cfg_cls", MODELS)
def test_any_channel_count(cls, cfg_cls):
    """4-channel (RGB-D) inputs: nothing is hard-coded to 1 or 3 channels."""
    assert cls.config_cls is cfg_cls
    det = make(cls, IMAGE, inputs=InputSpec("image", (4, 16, 16)))
    det.fit(np.random.default_rng(0).integers(0, 256, size=(32, 4, 16, 16), dtype=np.uint8), progress=False)
    assert det.score(np.zeros((3, 4, 16, 16), np.uint8)).shape == (3,)
    assert det.sample(2, seed=0).shape == (2, 4, 16, 16)


# --- training ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, cfg_cls", MODELS)
def test_history_records_every_loss(cls, cfg_cls):
    assert cls.config_cls is cfg_cls
    det = make(cls, TABULAR)
    history = det.fit(rows(), progress=False)
    assert [r.epoch for r in history] == [1, 2, 3]
    keys = set(history[0].stats)
    assert {"loss_d", "loss_g", "d_real", "d_fake"} <= keys
    assert ({"loss_e"} if cls is EGBADDetector else {"loss_adv", "loss_con", "loss_enc"}) <= keys
    assert all(np.isfinite(list(r.stats.values())).all() for r in history)
    assert not any(net.training for net in det.networks().values())


RESUME_CASES = [(cls, cfg_cls, inputs) for cls, cfg_cls in MODELS for inputs in ("tabular", "image")] + [(MADGANDetector, MADGANConfig, "window")]


@pytest.mark.parametrize("cls, cfg_cls, inputs", RESUME_CASES)
def test_resume_after_interruption_is_bit_identical(tmp_path, caplog, cls, cfg_cls, inputs):
    """Every model on models.trainer's training loop: MAD-GAN's windows too."""
    assert cls.config_cls is cfg_cls
    case, data = {"tabular": (TABULAR, rows()), "image": ((IMAGE[0], merged(IMAGE[1], {"training": {"epochs": 3}})), rgb()),
                  "window": (WINDOW, windows(128, seed=0))}[inputs]
    reference = make(cls, case)
    reference.fit(data, checkpoint_dir=tmp_path / "A", progress=False)

    def interrupt(record, samples):
        if record.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make(cls, case).fit(data, checkpoint_dir=tmp_path / "B", on_epoch_end=interrupt, progress=False)
    checkpoint = torch.load(tmp_path / "B" / LAST_CHECKPOINT, weights_only=True)
    assert checkpoint["epochs_done"] == 1
    assert set(checkpoint) == {"trained_as", "training_key", "data_key", "epochs_done", "state", "optimizers", "history", "selection", "average"}
    assert checkpoint["trained_as"] == cls.kind
    ran = []
    with caplog.at_level(logging.INFO, logger="models.trainer"):
        resumed = make(cls, case)
        resumed.fit(data, checkpoint_dir=tmp_path / "B", on_epoch_end=lambda r, s: ran.append(r.epoch), progress=False)
    assert ran == [2, 3] and any("resumed" in rec.getMessage() for rec in caplog.records)
    assert same_weights(resumed, reference)
    assert [r.stats for r in resumed.history] == [r.stats for r in reference.history]


def test_checkpoint_of_another_model_or_config_is_not_resumed(tmp_path, caplog):
    make(EGBADDetector, TABULAR).fit(rows(), checkpoint_dir=tmp_path, progress=False)
    ran = []
    with caplog.at_level(logging.WARNING, logger="models.trainer"):
        make(GANomalyDetector, TABULAR).fit(rows(), checkpoint_dir=tmp_path, on_epoch_end=lambda r, s: ran.append(r.epoch), progress=False)
        make(EGBADDetector, TABULAR, {"training": {"lr_d": 5e-4}}).fit(rows(), checkpoint_dir=tmp_path, progress=False)
    assert ran == [1, 2, 3]
    assert sum("training from scratch" in rec.getMessage() for rec in caplog.records) == 2


def test_a_scoring_setting_alone_reuses_the_finished_training(tmp_path):
    first = make(EGBADDetector, TABULAR)
    first.fit(rows(), checkpoint_dir=tmp_path, progress=False)
    ran = []
    again = make(EGBADDetector, TABULAR, {"alpha": 0.5, "score_method": "cross_entropy"})
    again.fit(rows(), checkpoint_dir=tmp_path, on_epoch_end=lambda r, s: ran.append(r.epoch), progress=False)
    assert ran == [] and same_weights(first, again)


@pytest.mark.parametrize("cls, cfg_cls", MODELS)
def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, cls, cfg_cls):
    assert cls.config_cls is cfg_cls
    det = make(cls, TABULAR)
    original = det.train_step

    def poisoned_after_first_epoch(real, gen, optimizers):
        stats = original(real, gen, optimizers)
        if len(det.history) >= 1:
            stats["loss_g"] = torch.tensor(float("nan"))
        return stats

    monkeypatch.setattr(det, "train_step", poisoned_after_first_epoch)
    with pytest.raises(GadflowError, match="non-finite loss at epoch 2"):
        det.fit(rows(), checkpoint_dir=tmp_path, progress=False)
    assert torch.load(tmp_path / LAST_CHECKPOINT, weights_only=True)["epochs_done"] == 1


def test_fit_rejects_bad_input():
    det = make(EGBADDetector, TABULAR)
    with pytest.raises(GadflowError, match="at least 2"):
        det.fit(rows(1), progress=False)
    with pytest.raises(GadflowError, match="does not match"):
        det.fit(np.zeros((8, 4), np.float32), progress=False)
    with pytest.raises(GadflowError, match="floating-point"):
        det.fit(np.zeros((8, 5), np.int64), progress=False)
    bad = rows()
    bad[3, 2] = np.nan
    with pytest.raises(GadflowError, match="sample 3 has a NaN"):
        det.score(bad)


def test_config_checks():
    with pytest.raises(SettingsError, match=r"score_method: one of 'feature_matching', 'cross_entropy' \(got 'l2'\)"):
        EGBADConfig.from_dict(merged(TABULAR[1], {"score_method": "l2"}))
    with pytest.raises(SettingsError, match=r"alpha: must be ≤ 1 \(got 1.5\)"):
        EGBADConfig.from_dict(merged(TABULAR[1], {"alpha": 1.5}))
    with pytest.raises(SettingsError, match=r"w_con: must be ≥ 0 \(got -1.0\)"):
        GANomalyConfig.from_dict(merged(TABULAR[1], {"training": {"w_con": -1.0}}))
    assert issubclass(SettingsError, GadflowError)


# --- initialisation ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, cfg_cls", MODELS)
def test_image_networks_get_the_dcgan_init(cls, cfg_cls):
    """Conv and linear weights ~ N(0, 0.02), BatchNorm γ ~ N(1, 0.02): the init is applied to every module."""
    assert cls.config_cls is cfg_cls
    det = make(cls, IMAGE, {"network": {"base_channels": 16}})
    for name, net in det.networks().items():
        convs = torch.cat([m.weight.detach().flatten() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))])
        gammas = torch.cat([m.weight.detach().flatten() for m in net.modules() if isinstance(m, nn.BatchNorm2d)] or [torch.ones(1)])
        assert abs(float(convs.mean())) < 0.005 and 0.015 < float(convs.std()) < 0.025, name
        assert abs(float(gammas.mean()) - 1) < 0.01, name
