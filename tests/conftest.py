"""Fixtures the test modules share. Helpers that are not fixtures are in tests/helpers/."""

from __future__ import annotations

import hashlib

import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors gain nothing from threads, and on 2 shared cores OpenMP spinning costs seconds per fit.
    Use it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture
def sqlite_registry(tmp_path, monkeypatch):
    """A fresh sqlite MLflow tracking store and registry in tmp_path, as the register step finds it
    (MLFLOW_TRACKING_URI), with the default artifact folder in tmp_path too. Returns (tracking URI, register params)."""
    import mlflow

    from tasks.tracking.register import RegisterParams

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(uri)
    return uri, RegisterParams()


@pytest.fixture
def tiny_idx(tmp_path):
    """Raw folder with a 60 / 24 image IDX dataset of 8x8 images, classes 0..3 (tests/helpers/data.py): (folder, arrays)."""
    from tests.helpers.data import write_tiny_idx

    raw = tmp_path / "raw" / "tiny"
    return raw, write_tiny_idx(raw)


@pytest.fixture(scope="module")
def png_archive(tmp_path_factory):
    """A PNG-folder archive of 4-channel 16×16 images: squares normal, noise anomalous."""
    from tests.helpers.data import write_png_archive

    return write_png_archive(tmp_path_factory.mktemp("png"))


@pytest.fixture(scope="module")
def params(png_archive):
    """Params of a dataset added by declaration only (the PNG archive, fetched by file:// URL) and a tiny DCGAN on it."""
    from tasks.params import Params

    sha = hashlib.sha256(png_archive.read_bytes()).hexdigest()
    return Params.model_validate({
        "download": {"parts": {"format": "png_folder", "files": {"archive": {"file": "parts.tar.gz", "sha256": sha, "urls": [png_archive.as_uri()]}}}},
        "prepare": {"parts": {"source": "parts", "calibration_fraction": 0.25, "seed": 0}},
        "experiments": {"parts-dcgan": {
            "data": "parts",
            "model": {"kind": "dcgan", "device": "cpu", "network": {"latent_dim": 8, "base_channels": 8}, "training": {"epochs": 2, "batch_size": 16}},
            "calibrate": {"mc_samples": 200, "nominal_fpr": 0.1},
            "report": {"grid_images": 4},
        }},
    })


@pytest.fixture(scope="module")
def chain(params, tmp_path_factory, monkeypatch_module):
    """The PNG dataset downloaded, prepared, and its DCGAN trained, calibrated, scored and reported (not registered), in a
    work folder that is the current folder for the module (data/ is read relative to it): {"work", "exp", "layout" (absolute), "params"}."""
    from tasks.layout import ExperimentLayout, prepared_dir, raw_dir
    from tasks.sources.download import download_dataset
    from tasks.steps.prepare import prepare_dataset
    from tasks.steps.run import run_experiment

    work = tmp_path_factory.mktemp("work")
    monkeypatch_module.chdir(work)  # the steps read and write data/ and outputs/ relative to the project root
    monkeypatch_module.delenv("GADFLOW_DATA_MIRROR", raising=False)  # fetch by URL
    exp = params.experiment("parts-dcgan")
    download_dataset("parts", params.download["parts"], raw_dir("parts"))
    prepare_dataset("parts", params.prepare["parts"], params.download["parts"], raw_dir("parts"), prepared_dir("parts"))
    run_experiment(exp, params, to_registry=False, outputs=work / "outputs")
    return {"work": work, "exp": exp, "layout": ExperimentLayout.of(exp.name, work / "outputs"), "params": params}
