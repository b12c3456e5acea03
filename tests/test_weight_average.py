"""The moving average of the trained weights (training.ema_decay): the update rule, training left unchanged, the
weights the model scores with, bit-identical resume, and epoch selection measured on the averaged weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.dcgan import DCGANDetector
from models.egbad import EGBADDetector
from models.ganomaly import GANomalyDetector
from models.selection import SelectionSet, synthetic_anomalies
from models.settings import SettingsError
from models.trainer import LAST_CHECKPOINT
from tests.test_detector import INPUTS, Interrupt, assert_same_weights, config, images
from tests.test_encoder_gans import TABULAR, make, rows

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py
AVERAGED = {"training": {"ema_decay": 0.99}}


def parameters(detector) -> dict[str, dict[str, torch.Tensor]]:
    return {name: {k: p.detach().clone() for k, p in net.named_parameters()} for name, net in detector.trained_networks().items()}


def test_the_update_rule_warms_up_then_uses_the_decay():
    det = DCGANDetector(config(AVERAGED), INPUTS)
    det._average = {name: {k: torch.zeros_like(v) for k, v in state.items()} for name, state in parameters(det).items()}
    live = parameters(det)
    det._update_average()  # update 0: d = min(0.99, 1/10) = 0.1, so the average moves 90 % of the way
    for name, state in live.items():
        for k, value in state.items():
            torch.testing.assert_close(det._average[name][k], 0.9 * value)
    det._average_updates = 10_000  # d = min(0.99, 10001/10010) = 0.99
    before = {name: {k: v.clone() for k, v in state.items()} for name, state in det._average.items()}
    det._update_average()
    for name, state in live.items():
        for k, value in state.items():
            torch.testing.assert_close(det._average[name][k], 0.99 * before[name][k] + 0.01 * value)
    assert det._average_updates == 10_001


def test_the_decay_is_bounded():
    with pytest.raises(SettingsError, match="ema_decay"):
        config({"training": {"ema_decay": 1.0}})


@pytest.mark.parametrize("cls", [EGBADDetector, GANomalyDetector])
def test_averaging_leaves_training_unchanged_and_the_model_scores_with_the_average(tmp_path, cls):
    """Dropout (global RNG) and BatchNorm: the live weights and losses are the same with or without the average."""
    data = rows()
    make(cls, TABULAR).fit(data, checkpoint_dir=tmp_path / "plain", progress=False)
    averaged = make(cls, TABULAR, AVERAGED)
    averaged.fit(data, checkpoint_dir=tmp_path / "averaged", progress=False)
    a = torch.load(tmp_path / "plain" / LAST_CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "averaged" / LAST_CHECKPOINT, weights_only=True)
    assert json.loads(a["history"]) != [] and [r["stats"] for r in json.loads(a["history"])] == [r["stats"] for r in json.loads(b["history"])]
    for net in a["state"]:
        for key in a["state"][net]:
            assert torch.equal(a["state"][net][key], b["state"][net][key]), f"{net}.{key}"
    assert a["average"] is None
    # the model ends with the averaged parameters, which differ from the last update's
    kept = parameters(averaged)
    differs = False
    for net, state in b["average"]["state"].items():
        for key, value in state.items():
            assert torch.equal(kept[net][key], value)
            differs |= not torch.equal(value, b["state"][net][key])
    assert differs and b["average"]["updates"] == 3 * 5  # 3 epochs of 80 rows in batches of 16


def test_averaged_training_resumes_bit_identically(tmp_path):
    data = images()
    cfg = config({"training": {"epochs": 3, "ema_decay": 0.99}})
    whole = DCGANDetector(cfg, INPUTS)
    whole.fit(data, checkpoint_dir=tmp_path / "A", progress=False)
    with pytest.raises(KeyboardInterrupt):
        DCGANDetector(cfg, INPUTS).fit(data, checkpoint_dir=tmp_path / "B", on_epoch_end=Interrupt(after_epoch=2), progress=False)
    resumed = DCGANDetector(cfg, INPUTS)
    resumed.fit(data, checkpoint_dir=tmp_path / "B", progress=False)
    assert_same_weights(whole, resumed)
    np.testing.assert_array_equal(whole.score(data[:8]), resumed.score(data[:8]))


def test_a_checkpoint_without_the_average_is_not_resumed(tmp_path, caplog):
    data = images()
    DCGANDetector(config({"training": {"epochs": 2}}), INPUTS).fit(data, checkpoint_dir=tmp_path, progress=False)
    epochs_run = []
    again = DCGANDetector(config({"training": {"epochs": 2, "ema_decay": 0.99}}), INPUTS)
    again.fit(data, checkpoint_dir=tmp_path, on_epoch_end=lambda r, s: epochs_run.append(r.epoch), progress=False)
    assert epochs_run == [1, 2] and "another model, config or data" in caplog.text


def test_selection_measures_and_keeps_the_averaged_weights(tmp_path):
    data = images()
    cfg = config({"training": {"epochs": 1, "ema_decay": 0.99}})
    selection = SelectionSet(images(32, seed=7), synthetic_anomalies(data, 32, seed=0), "label_free")
    chosen = DCGANDetector(cfg, INPUTS)
    chosen.fit(data, checkpoint_dir=tmp_path, progress=False, selection=selection)
    ckpt = torch.load(tmp_path / LAST_CHECKPOINT, weights_only=True)
    assert chosen.selected["epoch"] == 1
    kept = parameters(chosen)
    for net, state in ckpt["average"]["state"].items():
        for key, value in state.items():
            assert torch.equal(kept[net][key], value) and torch.equal(ckpt["selection"]["best_state"][net][key], value)
    # the AUROC recorded is that of the averaged weights
    assert chosen.selected["auroc"] == selection.auroc(chosen.score(selection.normals), chosen.score(selection.anomalies))
