"""The train step: a finished GAN of a sibling experiment with the same training settings and data is reused
(no second training, identical weights), and never one that differs in settings or data, or that did not measure
the selection set an experiment that selects its epoch needs."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from models.registry import load_detector
from tasks.adapters.base import SCHEMA
from tasks.adapters.image import SPLIT_FILES
from tasks.layout import ExperimentLayout, prepared_dir
from tasks.params import Experiment
from tasks.steps.train import train

GAN = {"kind": "dcgan", "device": "cpu", "network": {"latent_dim": 8, "base_channels": 4}, "training": {"epochs": 2, "batch_size": 16}}


def write_prepared(name: str, seed: int = 0):
    """A prepared image folder (the prepare step's layout) of 64 tiny 16×16 training images, at data/prepared/<name>."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train": rng.integers(0, 255, size=(64, 1, 16, 16), dtype=np.uint8),
        "calib": rng.integers(0, 255, size=(16, 1, 16, 16), dtype=np.uint8),
        "test": rng.integers(0, 255, size=(8, 1, 16, 16), dtype=np.uint8),
        "test_labels": np.array([0, 1] * 4, np.int8),
        "test_classes": np.array([0, 1] * 4, np.int16),
    }
    folder = prepared_dir(name)
    folder.mkdir(parents=True)
    for key, file in SPLIT_FILES.items():
        np.save(folder / file, arrays[key])
    (folder / SCHEMA).write_text(json.dumps({"kind": "image", "shape": [1, 16, 16], "files": SPLIT_FILES}))
    return folder


def experiment(name: str, data: str = "toy", **model) -> Experiment:
    return Experiment(name=name, data=data, model={**GAN, **model})


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    """The steps read data/prepared/<data> relative to the current folder: a fresh one per test."""
    monkeypatch.chdir(tmp_path)
    return tmp_path / "outputs"


def test_a_sibling_experiments_finished_gan_is_reused(outputs, caplog):
    write_prepared("toy")
    dcgan = load_detector(train(experiment("toy-dcgan"), ExperimentLayout.of("toy-dcgan", outputs)), device="cpu")
    search = {"n_seeds": 1, "steps": 2, "lr_theta": 0.0}
    layout = ExperimentLayout.of("toy-adgan", outputs)
    with caplog.at_level(logging.INFO, logger="tasks.steps.train"):
        adgan_dir = train(experiment("toy-adgan", kind="adgan", search=search), layout)
    assert any("reusing the finished GAN of toy-dcgan" in r.getMessage() for r in caplog.records)
    adgan = load_detector(adgan_dir, device="cpu")
    assert adgan.kind == "adgan"
    # ADGAN keeps the last epoch of the shared training; the DCGAN model keeps its selected epoch of the same run
    trained = torch.load(ExperimentLayout.of("toy-dcgan", outputs).checkpoints / "last.pt", weights_only=True)["state"]
    for name in ("generator", "discriminator"):
        for key, tensor in trained[name].items():
            assert torch.equal(tensor, adgan.networks()[name].state_dict()[key]), key
    assert json.loads(ExperimentLayout.of("toy-dcgan", outputs).selection.read_text())["rule"] == "best"
    assert json.loads(layout.selection.read_text())["rule"] == "last"
    assert dcgan.kind == "dcgan"
    assert sorted(p.name for p in layout.samples.glob("*.png")) == ["epoch_001.png", "epoch_002.png"]
    history = json.loads(layout.history.read_text())
    assert [h["epoch"] for h in history] == [1, 2]


def test_a_gan_that_selects_its_epoch_does_not_reuse_one_that_measured_nothing(outputs, caplog):
    write_prepared("toy")
    train(experiment("toy-adgan", kind="adgan", search={"n_seeds": 1, "steps": 2, "lr_theta": 0.0}), ExperimentLayout.of("toy-adgan", outputs))
    layout = ExperimentLayout.of("toy-dcgan", outputs)
    with caplog.at_level(logging.INFO, logger="tasks.steps.train"):
        train(experiment("toy-dcgan"), layout)  # selection.epoch: best by default
    assert not any("reusing" in r.getMessage() for r in caplog.records)
    record = json.loads(layout.selection.read_text())
    assert record["rule"] == "best" and len(record["curve"]) == 2 and record["signal"] == "label_free"


@pytest.mark.parametrize("change", ["settings", "data"])
def test_a_gan_that_differs_is_not_reused(outputs, caplog, change):
    write_prepared("toy")
    train(experiment("toy-dcgan"), ExperimentLayout.of("toy-dcgan", outputs))
    data = "toy-other" if change == "data" else "toy"
    if change == "data":
        write_prepared(data, seed=1)
    training = {**GAN["training"], "lr_d": 1e-3} if change == "settings" else GAN["training"]
    with caplog.at_level(logging.INFO, logger="tasks.steps.train"):
        train(experiment("toy-dcgan2", data=data, training=training), ExperimentLayout.of("toy-dcgan2", outputs))
    assert not any("reusing" in r.getMessage() for r in caplog.records)
