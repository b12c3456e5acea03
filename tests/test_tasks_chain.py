"""The step chain on a dataset added by declaration only: a PNG-folder archive of 4-channel 16×16 images, fetched
by file:// URL, prepared, trained, calibrated, scored, reported (the `chain` fixture, tests/conftest.py) and
registered (sqlite MLflow in tmp). Also: an unreachable MLflow gives one clear error; registration is idempotent;
each step writes only its own folder of the experiment's layout."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.errors import GadflowError
from tasks.adapters import load_prepared
from tasks.layout import ExperimentLayout, prepared_dir
from tasks.params import Experiment
from tasks.steps.calibrate import CalibrateSettings, calibrate
from tasks.steps.report import ReportSettings, report
from tasks.steps.run import STEPS
from tasks.steps.score import score
from tasks.tracking.register import RegisterParams, register

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def prepared(chain) -> Path:
    return chain["work"] / prepared_dir("parts")


def reading_chain_data(chain, folder: Path) -> None:
    """Let the steps, run with ``folder`` as the current folder (sqlite_registry's), find the chain's prepared data."""
    (folder / "data").symlink_to(chain["work"] / "data", target_is_directory=True)


def changed(exp: Experiment, **sections) -> Experiment:
    """``exp`` with some of its sections replaced."""
    return Experiment(**{**dict(exp), **sections})


def test_png_declaration_prepares_four_channel_splits(chain):
    data = load_prepared(prepared(chain))
    assert data.schema["shape"] == [4, 16, 16]
    assert data.input_spec.shape == (4, 16, 16)
    assert (len(data.train), len(data.calib), len(data.test)) == (90, 30, 40)
    assert data.test_labels.sum() == 20


def test_chain_writes_report_with_both_thresholds(chain):
    layout = chain["layout"]
    metrics = json.loads(layout.metrics.read_text())
    assert set(metrics["thresholds"]) == {"monte_carlo", "calibration"}
    assert metrics["threshold"] == metrics["thresholds"]["calibration"]["threshold"]
    for figure in ("mc_histogram", "test_histogram", "roc", "pr", "most_anomalous", "least_anomalous"):
        assert (layout.plots / f"{figure}.png").stat().st_size > 1000, figure
    frame = pd.read_parquet(layout.score_tables["scores"])
    assert list(frame.columns) == ["index", "label", "class", "score", "p_value", "is_anomaly"]
    assert (frame["is_anomaly"] == (frame["score"] > metrics["threshold"])).all()
    assert sorted(layout.samples.glob("epoch_*.png"))[-1].name == "epoch_002.png"


def test_register_and_predict_from_mlflow(chain, sqlite_registry):
    import mlflow

    _, registry = sqlite_registry
    model_uri = register(chain["exp"], registry, chain["layout"])
    assert model_uri == "models:/parts-dcgan@candidate"
    model = mlflow.pyfunc.load_model(model_uri)
    test = np.asarray(load_prepared(prepared(chain)).test[:5])
    predicted = model.predict(pd.DataFrame(test.reshape(5, -1).astype(float), columns=[f"p{i}" for i in range(4 * 16 * 16)]))
    expected = pd.read_parquet(chain["layout"].score_tables["scores"])["score"].to_numpy()[:5]
    np.testing.assert_allclose(predicted["score"].to_numpy(), expected, rtol=1e-6)
    with pytest.raises(Exception, match="missing inputs"):  # MLflow enforces the logged signature
        model.predict(pd.DataFrame(np.zeros((1, 10))))


def test_unreachable_mlflow_is_one_clear_error(chain, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # loopback port with no server
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    registry = RegisterParams()
    with pytest.raises(GadflowError, match=r"MLflow at http://127.0.0.1:9 failed while registering parts-dcgan"):
        register(chain["exp"], registry, chain["layout"])


# --- registration is idempotent ------------------------------------------------------------------
def test_registering_the_same_model_and_threshold_again_makes_no_new_version(chain, sqlite_registry, tmp_path):
    from mlflow.tracking import MlflowClient

    uri, registry = sqlite_registry
    client = MlflowClient(uri)
    reading_chain_data(chain, tmp_path)
    exp = chain["exp"]
    layout = ExperimentLayout.of(exp.name, tmp_path / "outputs")
    shutil.copytree(chain["layout"].root, layout.root)  # a copy: this test reruns steps on it

    def versions() -> list:
        return client.search_model_versions(f"name='{exp.name}'")

    def registered() -> dict:
        return json.loads(layout.registered.read_text())

    assert register(exp, registry, layout) == "models:/parts-dcgan@candidate"
    first = registered()
    assert first["new_version"] is True and len(versions()) == 1

    assert register(exp, registry, layout) == "models:/parts-dcgan@candidate"
    second = registered()
    assert second["new_version"] is False
    assert (str(second["version"]), second["run_id"]) == (str(first["version"]), first["run_id"])
    assert len(versions()) == 1

    # A report-only change (the paper protocol added) refreshes that version's report, metrics and tags.
    assert "test_paper_protocol_f1" not in versions()[0].tags
    reported = changed(exp, report=ReportSettings(grid_images=4, paper_top_fraction=0.25))
    report(reported, layout)
    assert "paper_protocol" in json.loads(layout.metrics.read_text())
    register(reported, registry, layout)
    third = registered()
    assert third["new_version"] is False and str(third["version"]) == str(first["version"])
    [version] = versions()
    assert "test_paper_protocol_f1" in version.tags
    assert "paper_protocol_f1" in client.get_run(first["run_id"]).data.metrics
    logged = client.download_artifacts(first["run_id"], "report/metrics.json", str(tmp_path))
    assert "paper_protocol" in json.loads(Path(logged).read_text())
    assert client.get_model_version_by_alias(exp.name, registry.alias).version == version.version

    # A changed threshold (another nominal FPR) is a new version, and the alias moves to it.
    recalibrated = changed(reported, calibrate=CalibrateSettings(mc_samples=200, nominal_fpr=0.2))
    calibrate(recalibrated, layout)
    score(recalibrated, layout)
    report(recalibrated, layout)
    register(recalibrated, registry, layout)
    fourth = registered()
    assert fourth["new_version"] is True and str(fourth["version"]) != str(first["version"])
    assert fourth["run_id"] != first["run_id"]
    assert len(versions()) == 2
    newest = client.get_model_version_by_alias(exp.name, registry.alias)
    assert str(newest.version) == str(fourth["version"]) and newest.tags["nominal_fpr"] == "0.2"


# --- each step writes only its own folder ----------------------------------------------------------
def files_under(*roots: Path) -> dict[Path, str]:
    """Every file under the roots, with its content hash."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for root in roots if root.exists() for p in root.rglob("*") if p.is_file()}


def test_each_step_writes_only_its_own_folder(chain, sqlite_registry, tmp_path):
    _, registry = sqlite_registry
    reading_chain_data(chain, tmp_path)
    params = chain["params"]
    exp = Experiment(
        name="parts-steps", data="parts",
        model={"kind": "dcgan", "device": "cpu", "network": {"latent_dim": 8, "base_channels": 4}, "training": {"epochs": 1, "batch_size": 16}},
        calibrate={"mc_samples": 100, "nominal_fpr": 0.1}, report={"grid_images": 4},
    )
    outputs = tmp_path / "outputs"
    layout = ExperimentLayout.of(exp.name, outputs)
    watched = (outputs, (chain["work"] / "data").resolve())  # every experiment's outputs, and the data (read only)
    runs = [  # (step, its arguments, the folders it owns)
        (STEPS.train, (exp, layout), (layout.train_dir, layout.model_dir)),
        (STEPS.calibrate, (exp, layout), (layout.calibration_dir,)),
        (STEPS.score, (exp, layout), (layout.scores_dir,)),
        (STEPS.report, (exp, layout), (layout.report_dir,)),
        (STEPS.register, (exp, registry, layout), (layout.registry_dir,)),
        (STEPS.promote, (params.registry, params.promote, layout), (layout.promotion_dir,)),
    ]
    for step, args, owned in runs:
        before = files_under(*watched)
        step(*args)
        after = files_under(*watched)
        touched = {p for p in after if before.get(p) != after[p]} | (before.keys() - after.keys())
        name = step.__name__
        assert all(folder.is_dir() for folder in owned), name
        assert touched, f"{name} wrote nothing"
        outside = sorted(str(p) for p in touched if not any(p.is_relative_to(folder) for folder in owned))
        assert not outside, f"{name} wrote outside {[str(f) for f in owned]}: {outside}"
    assert sorted(p.name for p in layout.root.iterdir()) == sorted(
        f.name for f in (layout.train_dir, layout.model_dir, layout.calibration_dir, layout.scores_dir, layout.report_dir,
                         layout.registry_dir, layout.promotion_dir))
    # A calibrate or score setting reruns the model stage: DVC removes model/ (train/ persists), and the train step
    # resumes its finished checkpoint, which trains nothing and saves the very same weights.
    from models.storage import load_checkpoint
    from models.trainer import LAST_CHECKPOINT

    trained = load_checkpoint(layout.model_dir / "model.pt")["model_id"]
    checkpoint = (layout.checkpoints / LAST_CHECKPOINT).stat().st_mtime_ns
    shutil.rmtree(layout.model_dir)
    STEPS.train(exp, layout)
    assert load_checkpoint(layout.model_dir / "model.pt")["model_id"] == trained
    assert (layout.checkpoints / LAST_CHECKPOINT).stat().st_mtime_ns == checkpoint  # no epoch ran, so none was saved


def test_a_monte_carlo_threshold_that_misses_on_the_calibration_normals_is_refused(chain, tmp_path, monkeypatch):
    """Label-free: the calibration split is normal, so the share of it above the Monte Carlo threshold estimates that
    threshold's FPR. Labelling with a threshold that misses is refused (nothing written); otherwise it is reported as refused."""
    import tasks.steps.calibrate as calibrate_step

    outputs = tmp_path / "outputs"
    shutil.copytree(chain["layout"].root, outputs / "parts-dcgan")
    layout = ExperimentLayout.of("parts-dcgan", outputs)
    check = json.loads(layout.threshold.read_text())["mc_summary"]["check"]  # every generator's calibration records it
    assert set(check) >= {"calibration_fpr", "calibration_n", "p_value", "holds"} and check["calibration_n"] == 30
    monkeypatch.setattr(calibrate_step, "mc_threshold", lambda scores, nominal_fpr: -1e9)  # G's samples all score below every normal
    before = layout.threshold.read_bytes()
    with pytest.raises(GadflowError, match=r"flags 100.0% of the 30 normal calibration samples against a nominal 10.0%.*label_method: calibration"):
        calibrate(changed(chain["exp"], calibrate=CalibrateSettings(mc_samples=100, nominal_fpr=0.1, label_method="monte_carlo")), layout)
    assert layout.threshold.read_bytes() == before  # refused before anything was written
    labelled = changed(chain["exp"], calibrate=CalibrateSettings(mc_samples=100, nominal_fpr=0.1))  # the calibration split labels
    for step in (calibrate, score, report):
        step(labelled, layout)
    refused = json.loads(layout.metrics.read_text())["thresholds"]["monte_carlo"]
    assert refused["refused"] is True and "flags 100.0%" in refused["reason"]
    assert "Monte Carlo threshold refused" in json.loads(layout.summary.read_text())["interpretation"]
