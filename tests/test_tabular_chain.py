"""The step chain on a tiny KDD99-format dataset fetched by file:// URL: download (checksums), prepare,
train, calibrate, score, report (both protocols, each named) and register; the registered pyfunc takes
raw KDD99 records and applies the preprocessor that travels with the model."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from tasks.adapters import load_prepared
from tasks.adapters.tabular import PREPROCESSOR_FILE, TABLE_FILES
from tasks.layout import ExperimentLayout, prepared_dir, raw_dir
from tasks.params import Params
from tasks.sources.download import download_dataset
from tasks.steps.prepare import prepare_dataset
from tasks.steps.run import run_experiment
from tasks.tracking.register import register
from tests.helpers.data import kdd_fields, write_kdd

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def params(tmp_path_factory) -> Params:
    root = tmp_path_factory.mktemp("kddsrc")
    # inliers: attack-like records near a few prototypes; the anomaly class: `normal.` records with other values
    records = [kdd_fields(i, label=["smurf.", "neptune."][i % 2], src_bytes=520 + i % 3, service=["ecr_i", "private"][i % 2]) for i in range(300)]
    records += [kdd_fields(i, label="normal.", src_bytes=2000 + 37 * i, service="http", dst_bytes=5000 + i) for i in range(300, 380)]
    train = write_kdd(root / "train.gz", records)
    test = write_kdd(root / "corrected.gz", records[::7])
    files = {role: {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "urls": [path.as_uri()]} for role, path in (("train", train), ("test", test))}
    experiments = {
        name: {
            "data": "kdd",
            "model": {"kind": kind, "device": "cpu", "network": {"latent_dim": 4, "hidden_dims": [16, 8]}, "training": {"epochs": 3, "batch_size": 32}},
            "calibrate": {"mc_samples": 200, "nominal_fpr": 0.1},
            "report": {"paper_top_fraction": 0.2},
        }
        for name, kind in (("kdd-egbad", "egbad"), ("kdd-ganomaly", "ganomaly"))
    }
    return Params.model_validate({
        "download": {"kdd": {"format": "kdd99", "files": files}},
        "prepare": {"kdd": {"source": "kdd", "calibration_fraction": 0.2, "seed": 0}},
        "experiments": experiments,
    })


@pytest.fixture(scope="module")
def chains(params, tmp_path_factory, monkeypatch_module):
    work = tmp_path_factory.mktemp("work")
    monkeypatch_module.chdir(work)  # the steps read data/ relative to the current folder
    monkeypatch_module.delenv("GADFLOW_DATA_MIRROR", raising=False)  # fetch by URL
    download_dataset("kdd", params.download["kdd"], raw_dir("kdd"))
    prepare_dataset("kdd", params.prepare["kdd"], params.download["kdd"], raw_dir("kdd"), prepared_dir("kdd"))
    out = {}
    for name in params.experiments:
        exp = params.experiment(name)
        run_experiment(exp, params, to_registry=False, outputs=work / "outputs")
        out[name] = {"exp": exp, "data_dir": work / prepared_dir("kdd"), "layout": ExperimentLayout.of(name, work / "outputs")}
    return out


@pytest.mark.parametrize("name", ["kdd-egbad", "kdd-ganomaly"])
def test_tabular_chain_reports_both_protocols(chains, name):
    chain = chains[name]
    layout = chain["layout"]
    data = load_prepared(chain["data_dir"])
    assert data.kind == "tabular" and data.test.dtype == np.float32 and data.test.shape[1] == data.input_spec.shape[0]
    metrics = json.loads(layout.metrics.read_text())
    assert metrics["protocol"].startswith("ours: the calibration threshold")
    paper = metrics["paper_protocol"]
    assert paper["uses_test_statistics"] is True and "top 20%" in paper["name"]
    frame = pd.read_parquet(layout.score_tables["scores"])
    assert abs((frame["score"] >= paper["threshold"]).mean() - 0.2) < 0.05  # the top fifth of the test scores
    assert set(frame["class"]) <= {"smurf.", "neptune.", "normal."}
    assert (layout.model_dir / PREPROCESSOR_FILE).read_text() == (chain["data_dir"] / PREPROCESSOR_FILE).read_text()
    for figure in ("mc_histogram", "test_histogram", "roc", "pr"):
        assert (layout.plots / f"{figure}.png").is_file()
    assert not (layout.plots / "most_anomalous.png").exists()  # no picture grids for feature rows
    summary = json.loads(layout.summary.read_text())
    assert "paper protocol" in summary["interpretation"]


@pytest.mark.parametrize("name", ["kdd-egbad", "kdd-ganomaly"])
def test_registered_tabular_model_scores_raw_records(chains, name, sqlite_registry):
    import mlflow
    from mlflow.tracking import MlflowClient

    chain = chains[name]
    uri, registry = sqlite_registry
    model_uri = register(chain["exp"], registry, chain["layout"])
    version = MlflowClient(uri).get_model_version_by_alias(name, "candidate")
    assert {"threshold", "test_paper_protocol_f1", "test_f1"} <= set(version.tags)
    raw = pd.read_parquet(chain["data_dir"] / TABLE_FILES["test_raw"]).drop(columns=["label"]).iloc[:12]
    predicted = mlflow.pyfunc.load_model(model_uri).predict(raw)
    expected = pd.read_parquet(chain["layout"].score_tables["scores"])["score"].to_numpy()[:12]
    np.testing.assert_allclose(predicted["score"].to_numpy(), expected, rtol=1e-6)
