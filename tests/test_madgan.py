"""MAD-GAN: the DR-score formula, the shared latent-search engine, sensor attribution and input checks
(its resume test is with the other encoder-loop models, tests/test_encoder_gans.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import models.latent_search as latent_search
from models.errors import GadflowError
from models.inputs import InputSpec
from models.madgan import MADGANConfig, MADGANDetector
from models.settings import SettingsError
from tests.helpers.data import sine_windows
from tests.helpers.detectors import merged

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

SEQ_LEN, CHANNELS = 10, 4
INPUTS = InputSpec("window", (SEQ_LEN, CHANNELS))
TINY = {"device": "cpu", "network": {"latent_dim": 3, "hidden_dim": 16},
        "training": {"epochs": 3, "batch_size": 32, "n_fixed_samples": 4, "lr_g": 1e-3, "lr_d": 1e-3},
        "search": {"n_seeds": 2, "steps": 20, "lr_z": 0.1, "lr_theta": 0.0}, "normaliser_windows": 64}


def config(changes: dict | None = None) -> MADGANConfig:
    return MADGANConfig.from_dict(merged(TINY, changes or {}))


def madgan(changes: dict | None = None) -> MADGANDetector:
    return MADGANDetector(config(changes), INPUTS)


def windows(n: int, seed: int) -> np.ndarray:
    """Four phase-shifted sines with a random phase per window: float32 (n, 10, 4) in [0.1, 0.9]."""
    return sine_windows(n, seed, SEQ_LEN, CHANNELS)


@pytest.fixture(scope="module")
def trained() -> MADGANDetector:
    detector = madgan({"training": {"epochs": 40}, "network": {"hidden_dim": 32}})  # ~13 s on one thread
    detector.fit(windows(512, seed=0), progress=False)
    return detector


def test_dr_score_is_lambda_weighted_standardised_terms(trained):
    x = windows(16, seed=1)
    terms = trained.score_terms(x)
    mean, std = trained.normaliser.mean.numpy(), trained.normaliser.std.numpy()
    lam = trained.config.dr_lambda
    expected = lam * (terms[:, 0] - mean[0]) / std[0] + (1 - lam) * (terms[:, 1] - mean[1]) / std[1]
    np.testing.assert_allclose(trained.score(x), expected, rtol=1e-12)
    assert ((terms[:, 0] >= 0) & (terms[:, 0] <= 1)).all()  # 1 − mean_t D(x)_t


def test_normaliser_is_measured_on_training_windows_after_fit():
    with pytest.raises(GadflowError, match="scored before fit"):
        madgan().score(windows(4, seed=1))
    detector = madgan({"training": {"epochs": 1}})
    train = windows(128, seed=0)
    detector.fit(train, progress=False)
    # It equals the terms' statistics on the seeded training subset (here: all 64 of the first 128 chosen windows).
    assert bool(detector.normaliser.fitted) and detector.normaliser.std.min() > 0
    again = madgan({"training": {"epochs": 1}})
    again.fit(train, progress=False)
    torch.testing.assert_close(again.normaliser.mean, detector.normaliser.mean, rtol=0, atol=0)


def test_reconstruction_runs_through_the_shared_engine(trained, monkeypatch):
    calls = []
    original = latent_search.LatentSearch.search

    def counting(self, targets, z0, on_step=None):
        calls.append((tuple(targets.shape), tuple(z0.shape), self.config.lr_theta))
        return original(self, targets, z0, on_step)

    monkeypatch.setattr(latent_search.LatentSearch, "search", counting)
    trained.score(windows(5, seed=2))
    assert calls == [((5, SEQ_LEN, CHANNELS), (5, 2, SEQ_LEN * 3), 0.0)]  # one chunk: (n, S, seq_len · latent_dim), θ frozen


def test_channel_residuals_point_at_the_disturbed_sensor(trained):
    x = windows(30, seed=3)
    disturbed = x.copy()
    disturbed[:, 4:7, 2] += 0.8  # sensor 2 jumps for three time steps
    residuals = trained.channel_residuals(disturbed)  # (30, seq_len, C)
    assert residuals.shape == (30, SEQ_LEN, CHANNELS)
    per_sensor = residuals[:, 4:7].mean(axis=1)  # (30, C)
    assert (per_sensor.argmax(axis=1) == 2).mean() >= 0.75  # chance is 0.25 (measured: 0.93)
    assert trained.score(disturbed).mean() > trained.score(x).mean()


def test_a_scoring_setting_alone_does_not_retrain(tmp_path):
    data = windows(128, seed=0)
    madgan().fit(data, checkpoint_dir=tmp_path, progress=False)
    ran = []
    madgan({"dr_lambda": 0.1, "search": {"steps": 5}}).fit(data, checkpoint_dir=tmp_path, on_epoch_end=lambda r, s: ran.append(r.epoch), progress=False)
    assert ran == []


def test_samples_are_windows_of_the_input_shape(trained):
    samples = trained.sample(6, seed=0)
    assert samples.shape == (6, SEQ_LEN, CHANNELS) and samples.dtype == np.float32
    np.testing.assert_array_equal(samples, trained.sample(6, seed=0))


@pytest.mark.parametrize("bad, message", [
    (np.zeros((3, SEQ_LEN + 1, CHANNELS), dtype=np.float32), "does not match"),
    (np.zeros((3, SEQ_LEN, CHANNELS), dtype=np.int64), "floating-point"),
    (np.where(np.arange(3)[:, None, None] == 1, np.nan, np.zeros((3, SEQ_LEN, CHANNELS))).astype(np.float32), "sample 1 has a NaN"),
])
def test_bad_windows_are_clear_errors(trained, bad, message):
    with pytest.raises(GadflowError, match=message):
        trained.score(bad)


def test_config_checks():
    with pytest.raises(GadflowError, match=r"model 'madgan' takes window inputs; this data gives image samples \(1, 8, 8\)"):
        MADGANDetector(config(), InputSpec("image", (1, 8, 8)))
    with pytest.raises(SettingsError, match=r"dr_lambda: must be ≤ 1 \(got 1.5\)"):
        config({"dr_lambda": 1.5})
    with pytest.raises(SettingsError, match="madgan keeps the generator frozen, so lr_theta must be 0"):
        config({"search": {"lr_theta": 1e-3}})
