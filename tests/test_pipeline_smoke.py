"""End to end on the real stack: `gadflow repro` (dvc repro of the stages `gadflow stages` writes) with the smoke
overlay's settings in a temporary git + DVC copy, then each registered model is loaded from MLflow and predicts as the
pipeline scored. Needs the dataset mirror."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers.project import BIN, REPO, SMOKE_OVERLAY, copy_project, dataset_mirror, project_env

def mirror() -> Path:
    return dataset_mirror("mnist")


@pytest.fixture(scope="module")
def smoke_repo(tmp_path_factory) -> Path:
    """A git + DVC copy of the tracked project files (but dvc.lock), with params.yaml and the smoke overlay merged as its
    params.yaml."""
    root = copy_project(tmp_path_factory.mktemp("smoke") / "repo")
    # dvc.lock records the default run, whose outputs and cache the copy does not have: with other params every
    # entry is stale, and DVC would only parse and rewrite them after each stage. The copy starts as a first run.
    (root / "dvc.lock").unlink()
    env = smoke_env(root)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True, env=env)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "smoke"], cwd=root, check=True, env=env)
    return root


def smoke_env(root: Path) -> dict[str, str]:
    return project_env(root, GADFLOW_DATA_MIRROR=str(mirror()),
                       GIT_AUTHOR_NAME="gadflow test", GIT_AUTHOR_EMAIL="test@gadflow.invalid",
                       GIT_COMMITTER_NAME="gadflow test", GIT_COMMITTER_EMAIL="test@gadflow.invalid")


def dvc(root: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "dvc"), *args], cwd=root, env=smoke_env(root), capture_output=True, text=True, timeout=timeout)


def gadflow_repro(root: Path, timeout: float = 1200) -> subprocess.CompletedProcess:
    """The README's main job: `dvc repro` of the generated stages, each in a child of the warm stage runner."""
    return subprocess.run([str(BIN / "gadflow"), "repro"], cwd=root, env=smoke_env(root), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def repro(smoke_repo: Path) -> tuple[Path, float]:
    start = time.perf_counter()
    result = gadflow_repro(smoke_repo)
    seconds = time.perf_counter() - start
    assert result.returncode == 0, f"gadflow repro failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert "Starting temporary server" not in result.stdout + result.stderr  # DVC's stages run the steps, not Prefect flows
    runner_log = (smoke_repo / ".prefect" / "stage-runner.log").read_text()  # the warm stage runner ran every stage
    for experiment in EXPERIMENTS:
        for command in (f"train {experiment}", f"score {experiment}", f"report {experiment} --register"):
            assert f"runs `gadflow {command}`" in runner_log, runner_log[-2000:]
    assert "running in this process" not in result.stderr  # no stage was refused or fell back
    return smoke_repo, seconds


EXPERIMENTS = ("mnist-dcgan", "mnist-adgan", "mnist-anogan", "rgbd-adgan", "rgbd-knn", "mnist-egbad", "mnist-ganomaly", "mnist-knn", "mnist-pca",
               "kdd99-egbad", "kdd99-ganomaly", "kdd99-knn", "kdd99-pca", "skab-madgan", "smd-madgan", "kdd99-madgan", "mnistseq-madgan")  # every system
REFERENCES = {"rgbd-knn": "rgbd", "mnist-knn": "mnist", "mnist-pca": "mnist", "kdd99-knn": "kdd99", "kdd99-pca": "kdd99"}  # no generator; by data
LATENT_SEARCH = ("mnist-adgan", "mnist-anogan", "rgbd-adgan")
EPOCH_SELECTED = ("mnist-dcgan", "mnist-egbad", "mnist-ganomaly", "kdd99-egbad", "kdd99-ganomaly")  # selection.epoch: best (models.selection)
TABULAR = ("kdd99-egbad", "kdd99-ganomaly", "kdd99-knn", "kdd99-pca")
SERIES = ("skab-madgan", "smd-madgan", "kdd99-madgan", "mnistseq-madgan")


def raw_test_rows(root: Path, experiment: str, n_rows: int) -> tuple[str, pd.DataFrame]:
    """(series name, the first n_rows raw input rows of the experiment's first test series), as a user would send them."""
    from tasks.adapters.series_store import read_split
    from tasks.params import load_params

    params = load_params(root / "params.yaml")
    prepared = root / "data" / "prepared" / params.experiments[experiment].data
    schema = json.loads((prepared / "schema.json").read_text())
    name, source = schema["series"][0], root / "data" / "raw" / schema["source"]
    if schema["format"] == "skab":
        from tasks.sources.skab import read_skab_csv

        values = read_skab_csv(source / f"{name}.csv")[schema["input_channels"]].to_numpy()
    elif schema["format"] == "smd":
        from tasks.sources.smd import read_smd_values

        values = read_smd_values(source / "test" / f"{name}.txt")
    elif schema["format"] == "kdd99":  # the test series is the tail of the 10% file
        from tasks.sources.kdd99 import read_kdd99

        records = read_kdd99(source / params.download[schema["source"]].files["train"].file)
        values = records[schema["input_channels"]].to_numpy()[-schema["counts"]["test_points"]:]
    else:  # image sequences: the stored frames are the raw input (pixels / 255, an identity transform)
        values = read_split(prepared / "test.arrow")[name].values
    return name, pd.DataFrame(np.asarray(values[:n_rows], dtype=np.float32), columns=schema["input_channels"])


def test_smoke_params_cover_every_experiment_of_the_defaults():
    from tasks.params import load_params, merged_params

    overlay = merged_params(SMOKE_OVERLAY)  # the overlay alone: it names every experiment it shrinks
    assert set(overlay["experiments"]) == set(load_params(REPO / "params.yaml").experiments) == set(EXPERIMENTS)
    assert set(load_params(REPO / "params.yaml", [SMOKE_OVERLAY]).experiments) == set(EXPERIMENTS)


@pytest.mark.integration
def test_smoke_repro_finishes_in_time(repro):
    root, seconds = repro
    # A guard against gross regressions only: the smoke run's time is measured, uncontended, by
    # benchmarks/pipeline_wall_time.py --quick (docs/benchmarks.md, against a 5-minute target); a shared CI
    # machine can be slower.
    assert seconds < 600, f"smoke dvc repro of every system took {seconds:.0f}s"
    from tasks.params import load_params

    data_of = {name: exp.data for name, exp in load_params(root / "params.yaml").experiments.items()}
    for experiment in EXPERIMENTS:
        expected = ["model/model.pt", "calibration/threshold.json", "scores/scores.parquet", "report/metrics.json", "report/plots/roc.png",
                    "report/plots/mc_histogram.png", "train/losses.png", "registry/registered.json", "promotion/promotion.json"]
        if experiment in SERIES:
            expected += ["scores/points.parquet", "model/series_transform.json", "model/windowing.json", "report/plots/series_scores.png"]
            expected += ["train/samples/epoch_001.png", "report/plots/frame_sequence.png"] if experiment == "mnistseq-madgan" else []
        elif experiment in TABULAR:
            expected += ["model/preprocessor.json"]
        else:
            expected += ["report/plots/most_anomalous.png"] + ([] if experiment in REFERENCES else ["train/samples/epoch_001.png"])
        expected += ["report/plots/anomaly_maps.png"] if experiment == "mnist-ganomaly" else []
        for rel in expected:
            assert (root / "outputs" / experiment / rel).is_file(), f"{experiment}/{rel}"
        promotion = json.loads((root / "outputs" / experiment / "promotion" / "promotion.json").read_text())
        assert promotion["promoted"] and promotion["reason"] == "first model of this name", promotion  # a fresh registry
        summary = json.loads((root / "outputs" / experiment / "report" / "summary.json").read_text())
        assert ("search_convergence" in summary) == (experiment in LATENT_SEARCH), experiment  # the label-free check of the search
        metrics = json.loads((root / "outputs" / experiment / "report" / "metrics.json").read_text())
        assert ("paper_protocol" in metrics) == (experiment in TABULAR), experiment  # KDD99: both protocols, each named
        data = data_of[experiment]
        compared = {r for r, d in REFERENCES.items() if d == data and r != experiment}  # every reference on the same data, scored first
        assert set(metrics["reference"]) == compared and all(m["available"] for m in metrics["reference"].values()), (experiment, metrics["reference"])
        selection = metrics["selection"]  # what chose the settings: never the test labels
        assert selection["test_labels_used"] is False and selection["choices"]["threshold"]["signal"] == "label_free"
        epoch = selection["choices"]["epoch"]
        rule = "best" if experiment in EPOCH_SELECTED else "none" if experiment in REFERENCES else "last"
        assert epoch["rule"] == rule, (experiment, epoch)
        if rule == "best":  # the smoke trains one epoch: measured once, kept, drawn
            assert epoch["signal"] == "label_free" and epoch["epoch"] == 1 and len(epoch["curve"]) == 1, epoch
            assert (root / "outputs" / experiment / "report" / "plots" / "selection.png").is_file()
        assert ("search_budget" in selection["choices"]) == (experiment in LATENT_SEARCH), experiment
        if experiment in SERIES:  # named point metrics, point adjustment only beside random scores
            overall = metrics["series"]["overall"]
            assert {"pointwise_f1", "event_recall", "point_adjusted_f1", "point_adjusted_f1_random_scores"} <= set(overall)
            assert metrics["thresholds"]["monte_carlo"]["applicable"] is False
        if experiment in TABULAR:
            assert metrics["paper_protocol"]["uses_test_statistics"] is True and "paper protocol" in metrics["paper_protocol"]["name"]
            assert metrics["protocol"].startswith("ours:")


@pytest.mark.integration
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_registered_model_loads_and_predicts(repro, experiment):
    import mlflow
    from mlflow.tracking import MlflowClient

    root, _ = repro
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    version = MlflowClient(uri).get_model_version_by_alias(experiment, "candidate")
    metrics = json.loads((root / f"outputs/{experiment}/report/metrics.json").read_text())
    assert float(version.tags["threshold"]) == pytest.approx(metrics["threshold"])
    assert version.tags["threshold_method"] == "calibration"
    assert float(version.tags["nominal_fpr"]) == 0.05
    assert {"test_precision", "test_recall", "test_f1", "test_auroc"} <= set(version.tags)
    run_metrics = MlflowClient(uri).get_run(version.run_id).data.metrics  # the references beside the model's own figures
    assert {f"reference_{r}_auroc_gap" for r in metrics["reference"]} <= set(run_metrics)
    assert ("selected_epoch" in run_metrics) == (experiment in EPOCH_SELECTED) and version.tags["selection_signal"] == "label_free"

    from tasks.params import load_params

    model = mlflow.pyfunc.load_model(f"models:/{experiment}@candidate")
    data = load_params(root / "params.yaml").experiments[experiment].data
    if experiment in SERIES:  # raw rows of one series in, one score per row out, as the pipeline scored them
        name, rows = raw_test_rows(root, experiment, 300)
        predicted = model.predict(rows)
        points = pd.read_parquet(root / f"outputs/{experiment}/scores/points.parquet")
        points = points[points["series"] == name].set_index("t")
        # rows far enough from the cut-off end are covered by the same windows as in the whole series
        kept = np.arange(len(rows) - json.loads((root / f"outputs/{experiment}/model/windowing.json").read_text())["seq_len"])
        np.testing.assert_allclose(predicted["score"].to_numpy()[kept], points["score"].loc[kept].to_numpy(), rtol=1e-5)
        assert (predicted["is_anomaly"].to_numpy() == (predicted["score"].to_numpy() > metrics["threshold"])).all()
        return
    if experiment in TABULAR:  # the served model takes raw KDD99 records and applies the fitted preprocessor itself
        assert "test_paper_protocol_f1" in version.tags
        frame = pd.read_parquet(root / f"data/prepared/{data}/test_raw.parquet").drop(columns=["label"]).iloc[:20]
    else:
        test = np.load(root / f"data/prepared/{data}/test.npy", mmap_mode="r")[:20]
        frame = pd.DataFrame(test.reshape(20, -1).astype(float), columns=[f"p{i}" for i in range(test[0].size)])
    predicted = model.predict(frame)
    assert list(predicted.columns) == ["score", "p_value", "is_anomaly"]
    scores = pd.read_parquet(root / f"outputs/{experiment}/scores/scores.parquet")["score"].to_numpy()[:20]
    np.testing.assert_allclose(predicted["score"].to_numpy(), scores, rtol=1e-6)  # same model, same preprocessing
    assert (predicted["is_anomaly"].to_numpy() == (scores > metrics["threshold"])).all()
    assert ((predicted["p_value"] > 0) & (predicted["p_value"] <= 1)).all()


@pytest.mark.integration
def test_second_repro_does_nothing(repro):
    root, _ = repro
    registered = {e: json.loads((root / f"outputs/{e}/registry/registered.json").read_text()) for e in EXPERIMENTS}
    again = gadflow_repro(root)
    assert again.returncode == 0, again.stderr
    assert "Running stage" not in again.stdout and "nothing to run" in again.stdout, again.stdout  # dvc status said so; no dvc repro
    assert {e: json.loads((root / f"outputs/{e}/registry/registered.json").read_text()) for e in EXPERIMENTS} == registered  # no new version


@pytest.mark.integration
def test_dvc_metrics_and_plots_are_declared(repro):
    root, _ = repro
    shown = dvc(root, "metrics", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    assert "auroc" in shown.stdout
    plots = dvc(root, "plots", "show", "--json")
    assert plots.returncode == 0, plots.stderr
    assert "roc.csv" in plots.stdout and "mc_histogram.png" in plots.stdout
    assert "search_trajectory.png" in plots.stdout  # the seed's figure, for the latent-search models


REPORT_OUTS = ("outputs/mnist-dcgan/report", "outputs/mnist-dcgan/registry", "outputs/mnist-dcgan/promotion")


def _stale(root: Path) -> list[str]:
    status = dvc(root, "status", "--json")
    assert status.returncode == 0, status.stderr
    return sorted(json.loads(status.stdout or "{}"))


@pytest.mark.integration
def test_only_what_a_change_touches_reruns(repro, tmp_path):
    """A comment in a module no stage runs stales nothing; a report-only setting stales only that report stage, whose
    rerun registers no new version (the same weights and threshold): the report is refreshed on the version."""
    root, _ = repro
    modules = ("tasks/tracking/nightly.py", "flows/nightly.py", "tasks/sources/swat_wadi.py", "tasks/sources/png_folder.py")
    originals = {module: (root / module).read_text() for module in modules}
    try:  # all four at once: a stage that one of them stales is stale with all of them
        for module, text in originals.items():
            (root / module).write_text(text + "# a comment\n")
        assert _stale(root) == []
    finally:
        for module, text in originals.items():
            (root / module).write_text(text)
    params = (root / "params.yaml").read_text()
    registered = json.loads((root / "outputs/mnist-dcgan/registry/registered.json").read_text())
    changed = params.replace("grid_images: 8", "grid_images: 7", 1)
    assert changed != params and "experiments.mnist-dcgan.report" in (root / "dvc.yaml").read_text()
    saved = tmp_path / "before"  # the report stage's outputs and the lock, put back after (instead of a second rerun)
    for out in REPORT_OUTS:
        shutil.copytree(root / out, saved / out)
    shutil.copy2(root / "dvc.lock", saved / "dvc.lock")
    (root / "params.yaml").write_text(changed)
    try:
        assert _stale(root) == ["report.mnist-dcgan"]
        rerun = gadflow_repro(root)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        ran = [line.split("'")[1] for line in rerun.stdout.splitlines() if line.startswith("Running stage")]
        assert ran == ["report.mnist-dcgan"], ran
        again = json.loads((root / "outputs/mnist-dcgan/registry/registered.json").read_text())
        assert again["version"] == registered["version"] and again["new_version"] is False
    finally:
        (root / "params.yaml").write_text(params)
        for out in REPORT_OUTS:
            shutil.rmtree(root / out, ignore_errors=True)
            shutil.copytree(saved / out, root / out)
        shutil.copy2(saved / "dvc.lock", root / "dvc.lock")
    assert _stale(root) == []


def test_cli_help_imports_no_heavy_library():
    code = "import sys, flows.cli; heavy = [m for m in ('torch', 'prefect', 'mlflow') if m in sys.modules]; print(heavy); sys.exit(bool(heavy))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
