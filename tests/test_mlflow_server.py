"""Against real MLflow tracking servers over HTTP, with a sqlite and with a PostgreSQL backend: the pipeline's
register step logs and registers, and the promotion gate moves @champion only on a better candidate. Also:
`mlflow models serve` answers /invocations, and a server stopped during logging leaves no half-registered version."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest

from flows.local_server import free_loopback_port, wait_until_healthy
from models.errors import GadflowError
from tasks.adapters import load_prepared
from tasks.layout import prepared_dir
from tasks.tracking.register import RegisterParams, register
from tests.helpers.project import BIN
from tests.helpers.registry import candidate_layout, run_gate_scenario
from tests.helpers.servers import postgres_bin, running_mlflow_server, running_postgres, stop_mlflow_server

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]
MODEL = "parts-dcgan"


def _needs_postgres() -> None:
    if postgres_bin() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL missing in CI: .ci/run installs Debian's postgresql")
        pytest.skip("Debian's postgresql is not installed")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_register_and_gate_through_a_tracking_server(backend, chain, tmp_path, monkeypatch):
    if backend == "postgresql":
        _needs_postgres()
        with running_postgres() as db, running_mlflow_server(tmp_path / "mlflow", backend_uri=db) as url:
            monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
            run_gate_scenario(chain, tmp_path, url)
            assert _tables(db) >= {"registered_models", "model_versions", "registered_model_aliases"}
    else:
        with running_mlflow_server(tmp_path / "mlflow") as url:
            monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
            run_gate_scenario(chain, tmp_path, url)
        assert (tmp_path / "mlflow" / "mlflow.db").is_file()  # the server's store, not a local one
    assert not (tmp_path / "mlflow.db").exists()


def _tables(db: str) -> set[str]:
    """The table names in the PostgreSQL database: MLflow's schema lives there."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(db)
    try:
        return set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _post(url: str, body: dict, timeout: float = 60) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def test_mlflow_models_serve_answers_invocations(chain, tmp_path, monkeypatch):
    with running_mlflow_server(tmp_path / "mlflow") as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        register(chain["exp"], RegisterParams(), chain["layout"])
        port = free_loopback_port()
        env = {**os.environ, "MLFLOW_TRACKING_URI": url, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
               "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # the scoring server runs the venv's uvicorn
        log = (tmp_path / "serve.log").open("wb")
        server = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}@candidate", "--env-manager", "local",
                                   "-h", "127.0.0.1", "-p", str(port), "-w", "1"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            wait_until_healthy(f"http://127.0.0.1:{port}/ping", 120, server, tmp_path / "serve.log", name="mlflow models serve")
            test = np.asarray(load_prepared(chain["work"] / prepared_dir(chain["exp"].data)).test[:6]).reshape(6, -1).astype(float)
            body = {"dataframe_split": {"columns": [f"p{i}" for i in range(test.shape[1])], "data": test.tolist()}}
            answer = pd.DataFrame(_post(f"http://127.0.0.1:{port}/invocations", body)["predictions"])
        finally:
            os.killpg(server.pid, 15)
            server.wait(timeout=30)
    assert list(answer.columns) == ["score", "p_value", "is_anomaly"] and len(answer) == 6
    expected = pd.read_parquet(chain["layout"].score_tables["scores"])
    np.testing.assert_allclose(answer["score"].to_numpy(), expected["score"].to_numpy()[:6], rtol=1e-6)
    assert answer["is_anomaly"].tolist() == expected["is_anomaly"].tolist()[:6]


def test_server_stopped_during_logging_leaves_no_half_registered_version(chain, tmp_path, monkeypatch):
    """The server dies after the run is created and before the model is logged: the step retries (MLflow's HTTP
    retries with backoff), then fails with one clear error; restarted, the registry holds version 1 only, complete.
    (The second model has another threshold: the same model and threshold again would be version 1, logging nothing.)"""
    import mlflow
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    store = tmp_path / "mlflow"
    with running_mlflow_server(store) as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        register(chain["exp"], RegisterParams(), chain["layout"])
        second = candidate_layout(chain, tmp_path / "second", 1, None)
        real_log_model = mlflow.pyfunc.log_model
        stopped_at = []

        def stop_server_then_log(*args, **kwargs):  # the server goes down mid-way through the register step
            stop_mlflow_server(url)
            stopped_at.append(time.monotonic())
            return real_log_model(*args, **kwargs)

        monkeypatch.setattr(mlflow.pyfunc, "log_model", stop_server_then_log)
        with pytest.raises(GadflowError, match=rf"MLflow at {url} failed while registering {MODEL}"):
            register(chain["exp"], RegisterParams(), second)
        assert time.monotonic() - stopped_at[0] >= 2.5  # two retries with backoff (1 s, then 2 s) before giving up
    monkeypatch.setattr(mlflow.pyfunc, "log_model", real_log_model)
    with running_mlflow_server(store) as url:  # the same store, restarted
        client = MlflowClient(url)
        versions = client.search_model_versions(f"name='{MODEL}'")
        assert [str(v.version) for v in versions] == ["1"]
        assert {"threshold", "threshold_method", "model_id"} <= set(versions[0].tags)
