"""DCGAN's feature score (score_method: feature_mahalanobis): fitted on training normals only, deterministic, saved
with the model, refitted for every selection measurement, and never mistaken for the other score's selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.dcgan import DCGANDetector
from models.latent_gans import ADGANConfig
from models.registry import load_detector
from models.selection import SelectionSet, subset, synthetic_anomalies
from models.settings import SettingsError
from models.trainer import LAST_CHECKPOINT
from tests.test_detector import INPUTS, config, images

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py
FEATURES = {"score_method": "feature_mahalanobis", "feature_fit_rows": 48}


def test_the_statistics_are_those_of_the_training_normals_features():
    from sklearn.covariance import LedoitWolf
    from sklearn.decomposition import PCA

    data = images()
    det = DCGANDetector(config(FEATURES), INPUTS)
    det.fit(data, progress=False)
    rows = data[subset(np.arange(len(data)), 48, seed=0)]
    with torch.no_grad():
        f = det.discriminator.eval().features(det.to_model_space(rows)).flatten(1).double().numpy()
    pca = PCA(n_components=0.95, svd_solver="covariance_eigh").fit(f)
    lw = LedoitWolf().fit(pca.transform(f))
    stats = det.feature_statistics
    np.testing.assert_allclose(stats.components.numpy(), pca.components_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats.precision.numpy(), lw.precision_, rtol=1e-4)
    test = images(20, seed=5)
    np.testing.assert_allclose(det.score(test), lw.mahalanobis(pca.transform(
        det.discriminator.features(det.to_model_space(test)).flatten(1).double().detach().numpy())), rtol=1e-3)


def test_the_feature_score_is_deterministic_and_travels_with_the_model(tmp_path):
    data, test = images(), images(20, seed=5)
    a, b = DCGANDetector(config(FEATURES), INPUTS), DCGANDetector(config(FEATURES), INPUTS)
    a.fit(data, progress=False)
    b.fit(data, progress=False)
    scores = a.score(test)
    assert np.isfinite(scores).all() and (scores >= 0).all()
    np.testing.assert_array_equal(scores, b.score(test))
    a.save(tmp_path)
    loaded = load_detector(tmp_path, device="cpu")
    np.testing.assert_array_equal(loaded.score(test), scores)
    assert loaded.model_id == a.model_id


def test_training_is_the_same_for_both_scores(tmp_path):
    data = images()
    DCGANDetector(config(), INPUTS).fit(data, checkpoint_dir=tmp_path / "d", progress=False)
    DCGANDetector(config(FEATURES), INPUTS).fit(data, checkpoint_dir=tmp_path / "f", progress=False)
    a = torch.load(tmp_path / "d" / LAST_CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "f" / LAST_CHECKPOINT, weights_only=True)
    assert a["training_key"] == b["training_key"] and a["state"].keys() == b["state"].keys() == {"generator", "discriminator"}
    for net in a["state"]:
        for key in a["state"][net]:
            assert torch.equal(a["state"][net][key], b["state"][net][key])


def test_each_epoch_is_measured_with_statistics_of_its_own_weights(tmp_path):
    data = images()
    selection = SelectionSet(images(32, seed=7), synthetic_anomalies(data, 32, seed=0), "label_free")
    det = DCGANDetector(config({**FEATURES, "training": {"epochs": 1}}), INPUTS)
    det.fit(data, progress=False, selection=selection)
    assert det.selected["auroc"] == selection.auroc(det.score(selection.normals), det.score(selection.anomalies))


def test_a_selection_measured_with_the_other_score_is_not_resumed(tmp_path, caplog):
    data = images()
    selection = SelectionSet(images(32, seed=7), synthetic_anomalies(data, 32, seed=0), "label_free")
    plain = DCGANDetector(config(), INPUTS)
    plain.fit(data, checkpoint_dir=tmp_path, progress=False, selection=selection)
    features = DCGANDetector(config(FEATURES), INPUTS)
    assert features.selection_key(selection) != plain.selection_key(selection)
    epochs_run = []
    features.fit(data, checkpoint_dir=tmp_path, on_epoch_end=lambda r, s: epochs_run.append(r.epoch), progress=False, selection=selection)
    assert epochs_run == [1, 2] and "did not measure this selection set" in caplog.text


def test_latent_search_models_have_no_feature_settings():
    """ADGAN/AnoGAN share DCGAN's training settings only: its score settings are not theirs."""
    for key, value in (("score_method", "feature_mahalanobis"), ("feature_fit_rows", 100), ("feature_variance", 0.9)):
        with pytest.raises(SettingsError, match=f"{key}: not a setting of ADGANConfig"):
            ADGANConfig.from_dict({key: value})
