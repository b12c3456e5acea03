"""The task chain on a dataset added by declaration only: a PNG-folder archive of 4-channel 16×16
images, fetched by file:// URL, prepared, trained, calibrated, scored, evaluated and registered
(sqlite MLflow in tmp). Also: an unreachable MLflow gives one clear error."""

from __future__ import annotations

import hashlib
import json
import tarfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from models.errors import GadflowError
from tasks.calibrate import calibrate_model
from tasks.config import Params, RegisterParams
from tasks.download import download_dataset
from tasks.evaluate import evaluate_scores
from tasks.prepare import load_prepared, prepare_dataset
from tasks.register import register_model
from tasks.score import score_test_set
from tasks.train import train_model


def _square(rng, size=16) -> np.ndarray:
    """RGBA image: a bright square on dark ground (normal)."""
    img = np.zeros((size, size, 4), np.uint8)
    x, y = rng.integers(1, size - 7, 2)
    img[y : y + 6, x : x + 6] = rng.integers(180, 255, 4)
    return img


def _noise(rng, size=16) -> np.ndarray:
    return rng.integers(0, 255, (size, size, 4), dtype=np.uint8)  # anomalous


@pytest.fixture(scope="module")
def png_archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("png")
    rng = np.random.default_rng(0)
    for folder, make, n in (("train/normal", _square, 120), ("test/normal", _square, 20), ("test/anomalous", _noise, 20)):
        (root / "parts" / folder).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(make(rng), "RGBA").save(root / "parts" / folder / f"{i:03d}.png")
    archive = root / "parts.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(root / "parts", arcname="parts")
    return archive


@pytest.fixture(scope="module")
def params(png_archive) -> Params:
    sha = hashlib.sha256(png_archive.read_bytes()).hexdigest()
    return Params.model_validate({
        "download": {"parts": {"format": "png_folder", "files": {"archive": {"file": "parts.tar.gz", "sha256": sha, "urls": [png_archive.as_uri()]}}}},
        "prepare": {"parts": {"source": "parts", "calibration_fraction": 0.25, "seed": 0}},
        "train": {"parts-dcgan": {"data": "parts", "model": "dcgan", "epochs": 2, "batch_size": 16, "latent_dim": 8, "base_channels": 8, "device": "cpu"}},
        "calibrate": {"parts-dcgan": {"mc_samples": 200, "nominal_fpr": 0.1}},
        "evaluate": {"parts-dcgan": {"grid_images": 4}},
    })


@pytest.fixture(scope="module")
def chain(params, tmp_path_factory, monkeypatch_module):
    work = tmp_path_factory.mktemp("work")
    monkeypatch_module.delenv("GADFLOW_DATA_MIRROR", raising=False)  # fetch by URL
    exp = params.experiment("parts-dcgan")
    raw = download_dataset.fn("parts", params.download["parts"], work / "raw" / "parts")
    data_dir = prepare_dataset.fn("parts", params.prepare["parts"], params.download["parts"], raw, work / "prepared" / "parts")
    out = work / "outputs" / "parts-dcgan"
    model_dir = train_model.fn(exp.name, exp.train, data_dir, out)
    calibrate_model.fn(exp.calibrate, model_dir, data_dir, out)
    scores = score_test_set.fn(model_dir, data_dir, out)
    report = evaluate_scores.fn(exp.name, exp.evaluate, scores, model_dir, data_dir, out)
    return {"work": work, "exp": exp, "data_dir": data_dir, "out": out, "model_dir": model_dir, "report": report, "scores": scores}


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_png_declaration_prepares_four_channel_splits(chain):
    data = load_prepared(chain["data_dir"])
    assert data.schema["shape"] == [4, 16, 16]
    assert (len(data.train), len(data.calib), len(data.test)) == (90, 30, 40)
    assert data.test_labels.sum() == 20


def test_chain_writes_report_with_both_thresholds(chain):
    metrics = json.loads((chain["report"] / "metrics.json").read_text())
    assert set(metrics["thresholds"]) == {"monte_carlo", "calibration"}
    assert metrics["threshold"] == metrics["thresholds"]["calibration"]["threshold"]
    for figure in ("mc_histogram", "test_histogram", "roc", "pr", "most_anomalous", "least_anomalous"):
        assert (chain["report"] / "plots" / f"{figure}.png").stat().st_size > 1000, figure
    frame = pd.read_parquet(chain["scores"])
    assert list(frame.columns) == ["index", "label", "class", "score", "p_value", "is_anomaly"]
    assert (frame["is_anomaly"] == (frame["score"] > metrics["threshold"])).all()
    assert sorted((chain["out"] / "train" / "samples").glob("epoch_*.png"))[-1].name == "epoch_002.png"


def test_register_and_predict_from_mlflow(chain, sqlite_registry):
    import mlflow

    _, registry = sqlite_registry
    model_uri = register_model.fn(chain["exp"], registry, chain["model_dir"], chain["report"], chain["out"])
    assert model_uri == "models:/parts-dcgan@candidate"
    model = mlflow.pyfunc.load_model(model_uri)
    test = np.asarray(load_prepared(chain["data_dir"]).test[:5])
    predicted = model.predict(pd.DataFrame(test.reshape(5, -1).astype(float), columns=[f"p{i}" for i in range(4 * 16 * 16)]))
    expected = pd.read_parquet(chain["scores"])["score"].to_numpy()[:5]
    np.testing.assert_allclose(predicted["score"].to_numpy(), expected, rtol=1e-6)
    with pytest.raises(Exception, match="missing inputs"):  # MLflow enforces the logged signature
        model.predict(pd.DataFrame(np.zeros((1, 10))))


def test_unreachable_mlflow_is_one_clear_error(chain, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # loopback port with no server
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    registry = RegisterParams()
    with pytest.raises(GadflowError, match=r"MLflow at http://127.0.0.1:9 failed while registering parts-dcgan"):
        register_model.fn(chain["exp"], registry, chain["model_dir"], chain["report"], chain["out"])
