"""Shared test fixtures."""

from __future__ import annotations

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


@pytest.fixture
def sqlite_registry(tmp_path, monkeypatch):
    """A fresh sqlite MLflow tracking store and registry in tmp_path, as the register step finds it
    (MLFLOW_TRACKING_URI), with the default artifact folder in tmp_path too. Returns (tracking URI, register params)."""
    import mlflow

    from tasks.config import RegisterParams

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(uri)
    return uri, RegisterParams()
