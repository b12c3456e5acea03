"""The train task: a finished GAN of a sibling experiment with the same training settings and data is reused
(no second training, identical weights), and never one that differs in settings or data."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from models import load_detector
from tasks.config import TrainParams
from tasks.prepare import SCHEMA, SPLIT_FILES
from tasks.train import train_model

GAN = dict(epochs=2, batch_size=16, latent_dim=8, base_channels=4, device="cpu")


def write_prepared(folder, seed: int = 0):
    """A prepared image folder (the prepare stage's layout) of 64 tiny 16×16 training images."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train": rng.integers(0, 255, size=(64, 1, 16, 16), dtype=np.uint8),
        "calib": rng.integers(0, 255, size=(16, 1, 16, 16), dtype=np.uint8),
        "test": rng.integers(0, 255, size=(8, 1, 16, 16), dtype=np.uint8),
        "test_labels": np.array([0, 1] * 4, np.int8),
        "test_classes": np.array([0, 1] * 4, np.int16),
    }
    folder.mkdir(parents=True)
    for key, file in SPLIT_FILES.items():
        np.save(folder / file, arrays[key])
    (folder / SCHEMA).write_text(json.dumps({"shape": [1, 16, 16], "files": SPLIT_FILES}))
    return folder


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def test_a_sibling_experiments_finished_gan_is_reused(tmp_path, caplog):
    data = write_prepared(tmp_path / "prepared")
    outputs = tmp_path / "outputs"
    dcgan = load_detector(train_model.fn("toy-dcgan", TrainParams(data="toy", model="dcgan", **GAN), data, outputs / "toy-dcgan"), device="cpu")
    search = {"n_seeds": 1, "steps": 2, "lr_theta": 0.0}
    with caplog.at_level(logging.INFO, logger="tasks.train"):
        adgan_dir = train_model.fn("toy-adgan", TrainParams(data="toy", model="adgan", search=search, **GAN), data, outputs / "toy-adgan")
    assert any("reusing the finished GAN of toy-dcgan" in r.getMessage() for r in caplog.records)
    adgan = load_detector(adgan_dir, device="cpu")
    for name in ("generator", "discriminator"):
        for key, tensor in dcgan.networks()[name].state_dict().items():
            assert torch.equal(tensor, adgan.networks()[name].state_dict()[key]), key
    assert sorted(p.name for p in (outputs / "toy-adgan" / "train" / "samples").glob("*.png")) == ["epoch_001.png", "epoch_002.png"]
    history = json.loads((outputs / "toy-adgan" / "train" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]


@pytest.mark.parametrize("change", ["settings", "data"])
def test_a_gan_that_differs_is_not_reused(tmp_path, caplog, change):
    data = write_prepared(tmp_path / "prepared")
    outputs = tmp_path / "outputs"
    train_model.fn("toy-dcgan", TrainParams(data="toy", model="dcgan", **GAN), data, outputs / "toy-dcgan")
    other_data = write_prepared(tmp_path / "prepared-other", seed=1) if change == "data" else data
    settings = {**GAN, "lr_d": 1e-3} if change == "settings" else GAN
    with caplog.at_level(logging.INFO, logger="tasks.train"):
        train_model.fn("toy-dcgan2", TrainParams(data="toy", model="dcgan", **settings), other_data, outputs / "toy-dcgan2")
    assert not any("reusing" in r.getMessage() for r in caplog.records)
