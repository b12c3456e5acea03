"""Epoch selection without test labels (models.selection): the synthetic anomalies, the kept epoch, resume, the
train step's selection set and record, and the report's record of what chose each setting."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.dcgan import DCGANDetector
from models.errors import GadflowError
from models.latent_gans import ADGANConfig
from models.selection import SelectionSet, subset, synthetic_anomalies
from models.settings import SettingsError
from models.trainer import LAST_CHECKPOINT
from tasks.reports.selection import selection_record, selection_sentence
from tasks.steps.train import selected_record, selection_set
from tests.test_detector import INPUTS, Interrupt, assert_same_weights, config, images

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


# --- synthetic anomalies ----------------------------------------------------------------------------------
def test_synthetic_images_are_deterministic_corruptions_of_the_normals():
    normals = images(40)
    a, b = synthetic_anomalies(normals, 30, seed=3), synthetic_anomalies(normals, 30, seed=3)
    assert a.shape == (30, 1, 16, 16) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, synthetic_anomalies(normals, 30, seed=4))
    copies = sum(any(np.array_equal(x, n) for n in normals) for x in a)
    assert copies <= 3  # a corruption may rarely leave its normal unchanged (a patch from an identical region)
    np.testing.assert_array_equal(normals, images(40))  # the normals themselves are untouched


def test_synthetic_table_rows_take_their_values_from_normal_rows():
    rng = np.random.default_rng(0)
    normals = rng.normal(size=(50, 6)).astype(np.float32)
    out = synthetic_anomalies(normals, 30, seed=0)
    assert out.shape == (30, 6) and out.dtype == np.float32 and np.isfinite(out).all()
    swapped, mixed = out[0::3], out[1::3]  # kinds 0 and 1 copy values feature by feature from normal rows
    for row in np.concatenate([swapped, mixed]):
        assert all(np.isin(row[j], normals[:, j]) for j in range(6))
    blends = out[2::3]  # means of two rows: none is a normal row (with continuous features)
    assert not any((normals == row).all(1).any() for row in blends)


def test_synthetic_anomalies_refuse_what_they_cannot_make():
    with pytest.raises(GadflowError, match="at least 2"):
        synthetic_anomalies(images(1), 5, seed=0)
    with pytest.raises(GadflowError, match="images .* and tables"):
        synthetic_anomalies(np.zeros((5, 4, 3), np.float32), 5, seed=0)


def test_subset_is_a_seeded_ordered_draw():
    rows = np.arange(100)
    picked = subset(rows, 10, seed=1)
    assert len(picked) == 10 and np.all(np.diff(picked) > 0)
    np.testing.assert_array_equal(picked, subset(rows, 10, seed=1))
    np.testing.assert_array_equal(subset(rows, 500, seed=1), rows)


# --- the kept epoch -------------------------------------------------------------------------------------
def selection_of(data: np.ndarray) -> SelectionSet:
    return SelectionSet(images(32, seed=7), synthetic_anomalies(data, 32, seed=0), "label_free")


def test_fit_keeps_the_epoch_with_the_best_selection_auroc_and_training_is_unchanged(tmp_path):
    data = images()
    cfg = config({"training": {"epochs": 4}})
    plain = DCGANDetector(cfg, INPUTS)
    plain.fit(data, checkpoint_dir=tmp_path / "plain", progress=False)
    chosen = DCGANDetector(cfg, INPUTS)
    chosen.fit(data, checkpoint_dir=tmp_path / "chosen", progress=False, selection=selection_of(data))
    curve = chosen.selected["curve"]
    assert len(curve) == 4 and chosen.selected["epoch"] == int(np.nanargmax(curve)) + 1
    assert chosen.selected["auroc"] == max(curve) and chosen.selected["signal"] == "label_free"
    # the kept weights are exactly those of a run of that many epochs (each epoch's stream depends on the epoch only)
    short = DCGANDetector(config({"training": {"epochs": chosen.selected["epoch"]}}), INPUTS)
    short.fit(data, progress=False)
    assert_same_weights(chosen, short)
    # training itself is unchanged: both checkpoints hold the same last-epoch weights
    a = torch.load(tmp_path / "plain" / LAST_CHECKPOINT, weights_only=True)["state"]
    b = torch.load(tmp_path / "chosen" / LAST_CHECKPOINT, weights_only=True)["state"]
    for net in a:
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key])


@pytest.mark.parametrize("kind", ["egbad", "ganomaly"])
def test_measuring_between_epochs_leaves_dropout_and_batchnorm_training_unchanged(tmp_path, kind):
    """Encoder GANs with dropout (global RNG) and BatchNorm: the last checkpoint is the same with or without selection."""
    from models.registry import get_detector
    from tests.test_encoder_gans import TABULAR, make, rows

    cls, data = get_detector(kind), rows()
    make(cls, TABULAR).fit(data, checkpoint_dir=tmp_path / "plain", progress=False)
    chosen = make(cls, TABULAR)
    chosen.fit(data, checkpoint_dir=tmp_path / "chosen", progress=False,
               selection=SelectionSet(rows()[:20] + 0.1, synthetic_anomalies(data, 30, seed=0), "label_free"))
    assert len(chosen.selected["curve"]) == 3
    a = torch.load(tmp_path / "plain" / LAST_CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "chosen" / LAST_CHECKPOINT, weights_only=True)
    losses = [[{k: v for k, v in r["stats"].items()} for r in json.loads(c["history"])] for c in (a, b)]
    assert losses[0] == losses[1]
    for net in a["state"]:
        for key in a["state"][net]:
            assert torch.equal(a["state"][net][key], b["state"][net][key]), f"{net}.{key}"


def test_selection_resumes_bit_identically(tmp_path):
    data = images()
    cfg = config({"training": {"epochs": 3}})
    whole = DCGANDetector(cfg, INPUTS)
    whole.fit(data, checkpoint_dir=tmp_path / "A", progress=False, selection=selection_of(data))
    with pytest.raises(KeyboardInterrupt):
        DCGANDetector(cfg, INPUTS).fit(data, checkpoint_dir=tmp_path / "B", on_epoch_end=Interrupt(after_epoch=2), progress=False, selection=selection_of(data))
    resumed = DCGANDetector(cfg, INPUTS)
    resumed.fit(data, checkpoint_dir=tmp_path / "B", progress=False, selection=selection_of(data))
    assert resumed.selected == whole.selected
    assert resumed.model_id == whole.model_id


def test_a_checkpoint_that_measured_another_selection_set_is_not_resumed(tmp_path, caplog):
    data = images()
    cfg = config({"training": {"epochs": 2}})
    DCGANDetector(cfg, INPUTS).fit(data, checkpoint_dir=tmp_path, progress=False)  # selected nothing
    again = DCGANDetector(cfg, INPUTS)
    epochs_run = []
    again.fit(data, checkpoint_dir=tmp_path, on_epoch_end=lambda r, s: epochs_run.append(r.epoch), progress=False, selection=selection_of(data))
    assert epochs_run == [1, 2] and "did not measure this selection set" in caplog.text
    assert len(again.selected["curve"]) == 2


def test_latent_search_models_keep_the_last_epoch():
    assert ADGANConfig().selection.epoch == "last"
    with pytest.raises(SettingsError, match="selection"):
        ADGANConfig.from_dict({"selection": {"epoch": "best"}})


# --- the train step's set and record --------------------------------------------------------------------
class Data:
    """What selection_set reads of a prepared folder."""

    def __init__(self, val: np.ndarray | None) -> None:
        self.train, self.calib, self.val_anomalies = images(40), images(30, seed=5), val


def test_selection_set_by_signal():
    det = DCGANDetector(config({"selection": {"max_normals": 20, "n_synthetic": 25}}), INPUTS)
    label_free = selection_set(det, Data(val=None))
    assert label_free.signal == "label_free" and len(label_free.normals) == 20 and len(label_free.anomalies) == 25
    val = images(12, seed=9)
    det = DCGANDetector(config({"selection": {"signal": "validation"}}), INPUTS)
    validation = selection_set(det, Data(val=val))
    np.testing.assert_array_equal(validation.anomalies, val)  # the declared split, never the test split
    with pytest.raises(GadflowError, match="no validation split"):
        selection_set(det, Data(val=None))
    assert selection_set(DCGANDetector(config({"selection": {"epoch": "last"}}), INPUTS), Data(val=None)) is None


def test_records_say_what_chose_the_epoch_and_the_threshold(tmp_path):
    data = images()
    det = DCGANDetector(config({"training": {"epochs": 2}}), INPUTS)
    det.fit(data, progress=False, selection=selection_of(data))
    record = selected_record(det)
    assert record["rule"] == "best" and record["epoch"] in (1, 2) and "synthetic anomalies" in record["evidence"]
    path = tmp_path / "selection.json"
    path.write_text(json.dumps(record))
    report = selection_record(path, "calibration", None)
    assert report["signal"] == "label_free" and report["test_labels_used"] is False
    assert report["choices"]["threshold"]["signal"] == "label_free" and "search_budget" not in report["choices"]
    assert "Selected without test labels (label_free): epoch" in selection_sentence(report)

    last = DCGANDetector(config({"training": {"epochs": 2}}), INPUTS)
    last.fit(data, progress=False)
    assert selected_record(last)["rule"] == "last" and selected_record(last)["epoch"] == 2
    budget = selection_record(tmp_path / "missing.json", "monte_carlo", {"steps": 19, "n_seeds": 3})
    assert budget["choices"]["epoch"]["rule"] == "unknown" and budget["choices"]["search_budget"]["steps"] == 19
