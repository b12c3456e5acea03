"""The task chain on a tiny KDD99-format dataset fetched by file:// URL: download (checksums), prepare,
train, calibrate, score, evaluate (both protocols, each named) and register; the registered pyfunc takes
raw KDD99 records and applies the preprocessor that travels with the model."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from tasks.calibrate import calibrate_model
from tasks.config import Params
from tasks.download import download_dataset
from tasks.evaluate import evaluate_scores
from tasks.prepare import load_prepared, prepare_dataset
from tasks.register import register_model
from tasks.score import score_test_set
from tasks.train import train_model

from .test_kdd99 import kdd_fields, write_kdd


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
        "kdd-egbad": {"data": "kdd", "model": "egbad", "epochs": 3, "batch_size": 32, "latent_dim": 4, "device": "cpu", "egbad": {"hidden_dims": [16, 8]}},
        "kdd-ganomaly": {"data": "kdd", "model": "ganomaly", "epochs": 3, "batch_size": 32, "latent_dim": 4, "device": "cpu", "ganomaly": {"hidden_dims": [16, 8]}},
    }
    return Params.model_validate({
        "download": {"kdd": {"format": "kdd99", "files": files}},
        "prepare": {"kdd": {"source": "kdd", "calibration_fraction": 0.2, "seed": 0}},
        "train": experiments,
        "calibrate": {name: {"mc_samples": 200, "nominal_fpr": 0.1} for name in experiments},
        "evaluate": {name: {"paper_top_fraction": 0.2} for name in experiments},
    })


@pytest.fixture(scope="module")
def chains(params, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.delenv("GADFLOW_DATA_MIRROR", raising=False)  # fetch by URL
    work = tmp_path_factory.mktemp("work")
    raw = download_dataset.fn("kdd", params.download["kdd"], work / "raw" / "kdd")
    data_dir = prepare_dataset.fn("kdd", params.prepare["kdd"], params.download["kdd"], raw, work / "prepared" / "kdd")
    out = {}
    for name in params.train:
        exp = params.experiment(name)
        run_dir = work / "outputs" / name
        model_dir = train_model.fn(name, exp.train, data_dir, run_dir)
        calibrate_model.fn(exp.calibrate, model_dir, data_dir, run_dir)
        scores = score_test_set.fn(model_dir, data_dir, run_dir, exp.evaluate.score_batch_size)
        report = evaluate_scores.fn(name, exp.evaluate, scores, model_dir, data_dir, run_dir)
        out[name] = {"exp": exp, "data_dir": data_dir, "out": run_dir, "model_dir": model_dir, "scores": scores, "report": report}
    mp.undo()
    return out


@pytest.mark.parametrize("name", ["kdd-egbad", "kdd-ganomaly"])
def test_tabular_chain_reports_both_protocols(chains, name):
    chain = chains[name]
    data = load_prepared(chain["data_dir"])
    assert data.kind == "tabular" and data.test.dtype == np.float32 and data.test.shape[1] == data.input_shape[0]
    metrics = json.loads((chain["report"] / "metrics.json").read_text())
    assert metrics["protocol"].startswith("ours: the calibration threshold")
    paper = metrics["paper_protocol"]
    assert paper["uses_test_statistics"] is True and "top 20%" in paper["name"]
    frame = pd.read_parquet(chain["scores"])
    assert abs((frame["score"] >= paper["threshold"]).mean() - 0.2) < 0.05  # the top fifth of the test scores
    assert set(frame["class"]) <= {"smurf.", "neptune.", "normal."}
    assert (chain["model_dir"] / "preprocessor.json").read_text() == (chain["data_dir"] / "preprocessor.json").read_text()
    for figure in ("mc_histogram", "test_histogram", "roc", "pr"):
        assert (chain["report"] / "plots" / f"{figure}.png").is_file()
    assert not (chain["report"] / "plots" / "most_anomalous.png").exists()  # no picture grids for feature rows
    summary = json.loads((chain["report"] / "summary.json").read_text())
    assert "paper protocol" in summary["interpretation"]


@pytest.mark.parametrize("name", ["kdd-egbad", "kdd-ganomaly"])
def test_registered_tabular_model_scores_raw_records(chains, name, sqlite_registry):
    import mlflow
    from mlflow.tracking import MlflowClient

    chain = chains[name]
    uri, registry = sqlite_registry
    model_uri = register_model.fn(chain["exp"], registry, chain["model_dir"], chain["report"], chain["out"])
    version = MlflowClient(uri).get_model_version_by_alias(name, "candidate")
    assert {"threshold", "test_paper_protocol_f1", "test_f1"} <= set(version.tags)
    raw = pd.read_parquet(chain["data_dir"] / "test_raw.parquet").drop(columns=["label"]).iloc[:12]
    predicted = mlflow.pyfunc.load_model(model_uri).predict(raw)
    expected = pd.read_parquet(chain["scores"])["score"].to_numpy()[:12]
    np.testing.assert_allclose(predicted["score"].to_numpy(), expected, rtol=1e-6)
