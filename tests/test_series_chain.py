"""The experiment steps on a small SMD-layout series: prepare -> train MAD-GAN -> calibrate -> score -> report.

Checks what only the chain shows: thresholds fitted on calibration *points*, one score per test point,
the named time-series metrics with the random reference, the timeline figure, and the transform in the model folder.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tasks.adapters import load_prepared
from tasks.adapters.series import TRANSFORM_FILE, WINDOWING_FILE
from tasks.steps.prepare import SeriesParams
from tasks.layout import ExperimentLayout, prepared_dir
from tasks.params import Experiment, Params
from tasks.sources.download import DatasetSpec
from tasks.steps.calibrate import CalibrateSettings
from tasks.steps.prepare import PrepareParams, prepare_dataset
from tasks.steps.run import run_experiment

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py
SHA = "0" * 64


def write_machine(root, machine: str, seed: int) -> np.ndarray:
    """38 metrics: smooth periodic load plus noise; the test file has three bursts of spikes. Returns the test labels."""
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, size=38)

    def signal(n: int, offset: int) -> np.ndarray:
        t = np.arange(offset, offset + n)[:, None]
        return 0.5 + 0.3 * np.sin(2 * np.pi * t / 40 + phase) + rng.normal(0, 0.02, size=(n, 38))

    train, test = signal(1200, 0), signal(600, 1200)
    labels = np.zeros(600, dtype=int)
    for start in (100, 300, 480):
        test[start : start + 15, :10] += 0.8
        labels[start : start + 15] = 1
    for part, values in (("train", train), ("test", test)):
        (root / part).mkdir(parents=True, exist_ok=True)
        np.savetxt(root / part / f"{machine}.txt", values, fmt="%.6f", delimiter=",")
    (root / "test_label").mkdir(exist_ok=True)
    (root / "test_label" / f"{machine}.txt").write_text("\n".join(map(str, labels)) + "\n")
    (root / "interpretation_label").mkdir(exist_ok=True)
    (root / "interpretation_label" / f"{machine}.txt").write_text("100-115:1,2\n300-315:3\n480-495:4,5\n")
    return labels


MODEL = {"kind": "madgan", "device": "cpu", "network": {"latent_dim": 4, "hidden_dim": 32},
         "training": {"epochs": 8, "batch_size": 32, "lr_g": 1e-3, "lr_d": 1e-3},
         "search": {"lr_theta": 0.0, "n_seeds": 2, "steps": 20, "lr_z": 0.1}, "normaliser_windows": 64}


@pytest.fixture(scope="module")
def chain(tmp_path_factory, monkeypatch_module):
    root = tmp_path_factory.mktemp("series")
    monkeypatch_module.chdir(root)  # the steps read data/prepared/<name> relative to the current folder
    raw = root / "data" / "raw" / "smd"
    write_machine(raw, "machine-1-1", seed=0)
    spec = DatasetSpec.model_validate({"format": "smd", "base_url": "https://example.invalid/",
                                       "files": {f"{p}_m": {"file": f"{p}/machine-1-1.txt", "sha256": SHA} for p in ("train", "test", "test_label", "interpretation_label")}})
    data_dir = prepare_dataset("smd", PrepareParams(source="smd", calibration_fraction=0.25, series=SeriesParams(seq_len=20, stride=5)),
                               spec, raw, prepared_dir("smd"))
    exp = Experiment(name="smd-madgan", data="smd", model=MODEL, calibrate=CalibrateSettings(mc_samples=200))
    params = Params.model_validate({"download": {"smd": spec.model_dump()}, "prepare": {"smd": {"source": "smd"}}, "experiments": {}})
    run_experiment(exp, params, to_registry=False, outputs=root / "outputs")
    return {"exp": exp, "raw": raw, "data": load_prepared(root / data_dir), "layout": ExperimentLayout.of(exp.name, root / "outputs")}


def test_one_score_per_test_point_and_flags_at_the_threshold(chain):
    layout = chain["layout"]
    points = pd.read_parquet(layout.score_tables["points"])
    assert len(points) == 600 and points["t"].tolist() == list(range(600))  # align_end: every point scored
    threshold = json.loads(layout.threshold.read_text())["thresholds"]["calibration"]
    assert (points["is_anomaly"] == (points["score"] > threshold)).all()
    windows = pd.read_parquet(layout.score_tables["scores"])
    assert len(windows) == len(chain["data"].test) and set(windows["class"]) == {"machine-1-1"}


def test_calibration_threshold_comes_from_calibration_points(chain):
    calibration = json.loads(chain["layout"].threshold.read_text())
    assert len(calibration["calibration_scores"]) == 300  # the last 25 % of 1,200 training rows, one score per point


def test_monte_carlo_cannot_label_a_series_and_nothing_is_overwritten(chain):
    # The rule is the experiment's own (ExperimentEntry): no window-model experiment labelling with Monte Carlo
    # can be built, so no step ever runs with one (params.yaml gets the same one-line error: tests/test_config.py).
    before = chain["layout"].threshold.read_bytes()
    with pytest.raises(ValueError, match="calibrate.label_method: 'madgan' is labelled on time points"):
        Experiment(**{**dict(chain["exp"]), "calibrate": CalibrateSettings(mc_samples=100, label_method="monte_carlo")})
    assert chain["layout"].threshold.read_bytes() == before


def test_report_has_the_named_series_metrics_and_the_random_reference(chain):
    metrics = json.loads(chain["layout"].metrics.read_text())
    overall = metrics["series"]["overall"]
    for key in ("pointwise_f1", "pointwise_precision", "pointwise_recall", "point_adjusted_f1", "point_adjusted_f1_random_scores",
                "event_recall", "auroc", "auprc"):
        assert key in overall and np.isfinite(overall[key])
    assert metrics["counts"]["test"] == 600 and metrics["series"]["aggregated_over_series"]["files"] == 1
    # The bursts are obvious: the trained detector ranks them far above chance.
    assert overall["auroc"] > 0.9, overall
    assert (chain["layout"].plots / "series_scores.png").stat().st_size > 0


def test_attribution_ranks_sensors_for_each_labelled_range(chain):
    from tasks.reports.attribution import random_hit_probability

    attribution = json.loads(chain["layout"].metrics.read_text())["series"]["attribution"]
    assert attribution["ranges"] == 3
    # Ranges label 2, 1 and 2 of 38 sensors: the random-ranking figure is exact.
    expected = np.mean([random_hit_probability(38, n, 3) for n in (2, 1, 2)])
    assert attribution["hit@3_random_ranking"] == pytest.approx(expected)
    assert random_hit_probability(38, 2, 1) == pytest.approx(2 / 38)
    # The bursts sit on sensors 1-10 and every labelled sensor is among them: top-ranked sensors should be there.
    assert attribution["hit@5"] >= attribution["hit@5_random_ranking"]


def test_the_fitted_transform_travels_with_the_model(chain):
    model_dir = chain["layout"].model_dir
    assert (model_dir / TRANSFORM_FILE).read_text() == (chain["data"].folder / TRANSFORM_FILE).read_text()
    windowing = json.loads((model_dir / WINDOWING_FILE).read_text())
    assert windowing["seq_len"] == 20 and windowing["input_channels"] == [f"metric_{i}" for i in range(1, 39)]


def test_registered_model_scores_raw_sensor_rows(chain, sqlite_registry):
    """The pyfunc takes the raw rows of a series (the training channels' columns) and returns one score per row,
    equal to the pipeline's point scores of the same series."""
    import mlflow

    from models.errors import GadflowError
    from tasks.sources.smd import read_smd_values
    from tasks.tracking.register import register

    _, registry = sqlite_registry
    model_uri = register(chain["exp"], registry, chain["layout"])
    model = mlflow.pyfunc.load_model(model_uri)
    rows = pd.DataFrame(read_smd_values(chain["raw"] / "test" / "machine-1-1.txt"), columns=[f"metric_{i}" for i in range(1, 39)])
    predicted = model.predict(rows)
    expected = pd.read_parquet(chain["layout"].score_tables["points"])
    assert len(predicted) == 600
    np.testing.assert_allclose(predicted["score"].to_numpy(), expected["score"].to_numpy(), rtol=1e-5)
    np.testing.assert_array_equal(predicted["is_anomaly"].to_numpy(), expected["is_anomaly"].to_numpy())
    with pytest.raises(Exception, match="metric_38"):  # MLflow's signature check answers first
        model.predict(rows.drop(columns=["metric_38"]))
    with pytest.raises(GadflowError, match="shorter than one window"):
        model.predict(rows.iloc[:5])
