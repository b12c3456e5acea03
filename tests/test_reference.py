"""The reference detectors (models/reference.py): what they compute, checked against scikit-learn directly; that
they persist, load and score identically; and that they run the same train -> calibrate -> score -> report ->
register path as the GANs, without a Monte Carlo threshold, and serve from MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from models.errors import GadflowError
from models.inputs import InputSpec
from models.reference import KNNConfig, KNNDetector, PCAConfig, PCADetector
from models.registry import capabilities, get_detector, load_detector
from tasks.params import Experiment, ParamsError

TABLE = InputSpec(kind="tabular", shape=(10,))


def normals_and_outliers(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train normals, test inputs, test labels): normals near a 2-D plane of 10-D space, outliers off it."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(2, 10))
    normal = lambda n: (rng.normal(size=(n, 2)) @ basis + 0.05 * rng.normal(size=(n, 10))).astype(np.float32)  # noqa: E731
    outliers = (rng.normal(size=(40, 2)) @ basis + rng.normal(size=(40, 10))).astype(np.float32)
    test = np.concatenate([normal(60), outliers])
    return normal(300), test, np.r_[np.zeros(60), np.ones(40)]


def test_references_are_registered_for_images_and_tables_without_a_generator():
    for kind in ("knn", "pca"):
        caps = capabilities(kind)
        assert set(caps.input_kinds) == {"image", "tabular"} and caps.generator is False
    assert get_detector("knn") is KNNDetector and get_detector("pca") is PCADetector


def test_knn_score_is_the_distance_to_the_kth_training_normal(tmp_path):
    train, test, labels = normals_and_outliers()
    detector = KNNDetector(KNNConfig(device="cpu", k=5), TABLE)
    assert detector.fit(train) == []  # no epochs
    scores = detector.score(test, batch_size=32)
    expected = NearestNeighbors(n_neighbors=5).fit(train).kneighbors(test)[0][:, -1]
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    assert roc_auc_score(labels, scores) > 0.95  # higher = more anomalous
    detector.save(tmp_path)
    loaded = load_detector(tmp_path, device="cpu")
    assert isinstance(loaded, KNNDetector) and loaded.model_id == detector.model_id
    np.testing.assert_array_equal(loaded.score(test), scores)


def test_knn_counts_repeated_rows_as_a_search_over_every_row_would():
    """Tables repeat rows: the detector keeps each distinct normal once with its count, and searches repeated
    queries once; the k-th distance must equal scikit-learn's over every row, duplicates included."""
    rng = np.random.default_rng(3)
    distinct = rng.normal(size=(12, 10)).astype(np.float32)
    train = distinct[rng.choice(12, size=200, p=np.r_[0.5, 0.3, np.full(10, 0.02)])]  # a few rows repeated many times
    test = np.concatenate([train[:30], rng.normal(size=(20, 10)).astype(np.float32), train[:30]])  # repeated queries
    for k in (1, 5, 90):  # k beyond the most repeated row's count, and beyond a query's distinct neighbours
        detector = KNNDetector(KNNConfig(device="cpu", k=k), TABLE)
        detector.fit(train)
        assert len(detector.fitted.normals) == len(np.unique(train, axis=0)) and int(detector.fitted.counts.sum()) == 200
        expected = NearestNeighbors(n_neighbors=k).fit(train).kneighbors(test)[0][:, -1]
        np.testing.assert_allclose(detector.score(test, batch_size=16), expected, rtol=1e-6, atol=1e-6)


def test_pca_score_is_the_mean_squared_residual_of_the_kept_components(tmp_path):
    train, test, labels = normals_and_outliers(1)
    detector = PCADetector(PCAConfig(device="cpu", variance=0.9), TABLE)
    detector.fit(train)
    scores = detector.score(test)
    pca = PCA(n_components=0.9, svd_solver="full").fit(train)
    assert detector.fitted.components.shape == (pca.n_components_, 10)
    expected = ((test - pca.inverse_transform(pca.transform(test))) ** 2).mean(axis=1)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-7)
    assert roc_auc_score(labels, scores) > 0.95
    detector.save(tmp_path)
    loaded = load_detector(tmp_path, device="cpu")
    assert loaded.model_id == detector.model_id
    np.testing.assert_array_equal(loaded.score(test), scores)
    again = PCADetector(PCAConfig(device="cpu", variance=0.9), TABLE)
    again.fit(train)
    assert again.model_id == detector.model_id  # the same data give the same model


def test_references_take_images_in_the_models_pixel_space():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(30, 1, 4, 4), dtype=np.uint8)
    detector = KNNDetector(KNNConfig(device="cpu", k=2), InputSpec(kind="image", shape=(1, 4, 4)))
    detector.fit(images)
    flat = images.reshape(30, -1).astype(np.float32) / 127.5 - 1.0
    np.testing.assert_allclose(detector.fitted.normals.numpy(), np.unique(flat, axis=0), atol=1e-6)
    with pytest.raises(GadflowError, match="uint8"):
        detector.score(images.astype(np.float32))


def test_knn_needs_more_training_samples_than_k():
    with pytest.raises(GadflowError, match="k = 5 needs more than 5 training samples, got 5"):
        KNNDetector(KNNConfig(device="cpu"), TABLE).fit(np.zeros((5, 10), dtype=np.float32))


def test_a_reference_cannot_label_with_a_monte_carlo_threshold():
    entry = {"name": "x", "data": "parts", "model": {"kind": "knn"}}
    assert Experiment(**entry).model.k == 5
    with pytest.raises(ValueError, match="'pca' has no generator, so there is no Monte Carlo threshold"):
        Experiment(**{**entry, "model": {"kind": "pca"}, "calibrate": {"label_method": "monte_carlo"}})


@pytest.mark.parametrize("kind", ["knn", "pca"])
def test_reference_runs_the_experiment_path_and_serves_from_mlflow(chain, sqlite_registry, tmp_path, kind):
    import mlflow

    from tasks.adapters import load_prepared
    from tasks.layout import ExperimentLayout, prepared_dir
    from tasks.steps.run import run_experiment

    _, registry = sqlite_registry
    (tmp_path / "data").symlink_to(chain["work"] / "data", target_is_directory=True)  # the chain's prepared data
    params = chain["params"]
    exp = Experiment(name=f"parts-{kind}", data="parts", model={"kind": kind, "device": "cpu"}, calibrate={"nominal_fpr": 0.1},
                     report={"grid_images": 4})
    uri = run_experiment(exp, params.model_copy(update={"registry": registry}), outputs=tmp_path / "outputs")
    assert uri == f"models:/parts-{kind}@candidate"
    layout = ExperimentLayout.of(exp.name, tmp_path / "outputs")
    threshold = json.loads(layout.threshold.read_text())
    assert "monte_carlo" not in threshold["thresholds"] and set(threshold["thresholds"]) >= {"calibration"}
    assert threshold["mc_summary"]["applicable"] is False and "no generator" in threshold["mc_summary"]["reason"]
    metrics = json.loads(layout.metrics.read_text())
    assert metrics["counts"]["mc_samples"] == 0 and 0.0 <= metrics["auroc"] <= 1.0
    assert json.loads(layout.history.read_text()) == [] and (layout.plots / "mc_histogram.png").is_file()
    model = mlflow.pyfunc.load_model(uri)
    test = np.asarray(load_prepared(prepared_dir("parts")).test[:5])
    predicted = model.predict(pd.DataFrame(test.reshape(5, -1).astype(float), columns=[f"p{i}" for i in range(test[0].size)]))
    expected = pd.read_parquet(layout.score_tables["scores"])["score"].to_numpy()[:5]
    np.testing.assert_allclose(predicted["score"].to_numpy(), expected, rtol=1e-6)
    assert (predicted["is_anomaly"].to_numpy() == (expected > metrics["threshold"])).all()


def test_unknown_setting_of_a_reference_names_its_key():
    with pytest.raises((ParamsError, ValueError), match="lr"):
        Experiment(name="x", data="parts", model={"kind": "knn", "lr": 0.1})


def test_reference_module_imports_no_scikit_learn_until_used():
    import subprocess
    import sys

    code = "import sys, models.reference; sys.exit(any(m.startswith('sklearn') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1]).returncode == 0  # params loading stays light


def test_every_experiment_is_compared_with_the_references_on_its_data():
    from flows.dvc_stages import stages
    from tasks.params import load_params, merged_params

    repo = Path(__file__).parents[1]
    params = load_params(repo / "params.yaml")
    assert params.experiment("mnist-dcgan").references == ("mnist-knn", "mnist-pca")
    assert params.references_of("mnist-knn") == ("mnist-pca",)  # never itself
    assert params.references_of("rgbd-adgan") == ("rgbd-knn",)
    assert params.experiment("kdd99-egbad").references == ("kdd99-knn", "kdd99-pca")
    assert params.references_of("skab-madgan") == ()  # no reference on that data
    deps = stages(params, merged_params(repo / "params.yaml"))["report.kdd99-ganomaly"]["deps"]
    assert {"outputs/kdd99-knn/scores", "outputs/kdd99-pca/scores"} <= set(deps)  # DVC reruns the report when a reference is rescored


def test_report_states_the_references_auroc_on_the_same_rows_and_the_gap(chain, tmp_path):
    import shutil

    from tasks.layout import ExperimentLayout
    from tasks.reports.metrics import ranking_metrics
    from tasks.steps.calibrate import calibrate
    from tasks.steps.report import report
    from tasks.steps.score import score
    from tasks.steps.train import train

    outputs = tmp_path / "outputs"
    shutil.copytree(chain["layout"].root, outputs / "parts-dcgan")  # the chain's trained and scored DCGAN
    knn = Experiment(name="parts-knn", data="parts", model={"kind": "knn", "device": "cpu"}, calibrate={"nominal_fpr": 0.1})
    knn_layout = ExperimentLayout.of("parts-knn", outputs)
    for step in (train, calibrate, score):
        step(knn, knn_layout)
    exp = chain["exp"].model_copy(update={"references": ("parts-knn", "parts-pca")})  # parts-pca was never scored
    layout = ExperimentLayout.of("parts-dcgan", outputs)
    report(exp, layout)
    metrics = json.loads(layout.metrics.read_text())
    knn_scores = pd.read_parquet(knn_layout.score_tables["scores"])
    expected = ranking_metrics(knn_scores["label"].to_numpy(), knn_scores["score"].to_numpy())
    ref = metrics["reference"]["parts-knn"]
    assert ref["available"] and ref["auroc"] == pytest.approx(expected["auroc"]) and ref["auprc"] == pytest.approx(expected["auprc"])
    assert ref["auroc_gap"] == pytest.approx(metrics["auroc"] - expected["auroc"])
    missing = metrics["reference"]["parts-pca"]
    assert missing["available"] is False and "not scored yet" in missing["reason"]
    interpretation = json.loads(layout.summary.read_text())["interpretation"]
    assert f"parts-knn AUROC {expected['auroc']:.3f}" in interpretation and "Not compared (see metrics.json): parts-pca" in interpretation
    # a reference scored on other rows (here: one row fewer) is refused, never compared on another split
    knn_scores.iloc[1:].to_parquet(knn_layout.score_tables["scores"])
    report(exp, layout)
    refused = json.loads(layout.metrics.read_text())["reference"]["parts-knn"]
    assert refused["available"] is False and "other rows" in refused["reason"]
