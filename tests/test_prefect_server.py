"""train-all against a real `prefect server` on loopback, with two process workers on the `gpu` pool and one on `cpu`.

The deployments come from the project's prefect.yaml (`prefect --no-prompt deploy --all`). The train-all deployment
runs on the cpu worker and fans two smoke cells out through the `train` deployment; with `--limit 1` each gpu
worker takes one of them. Everything is stopped at the end, workers before the server.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from flows.local_server import free_loopback_port, stop, wait_until_healthy

from .project_copy import BIN, copy_tracked_files, dataset_mirror, project_env

CELLS = ("rgbd-adgan", "skab-madgan")  # a rendered dataset and a small download: no large data needed


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args[:4])} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The tracked project files with the smoke params, and the two cells' data prepared."""
    root = copy_tracked_files(tmp_path_factory.mktemp("server") / "repo", skip=("tests/", "docs/"))
    env = base_env(root)
    for step in (["generate", "rgbd"], ["prepare", "rgbd"], ["download", "skab"], ["prepare", "skab"]):
        run([str(BIN / "gadflow"), *step], root, env)
    return root


def base_env(root: Path) -> dict[str, str]:
    return project_env(root, GADFLOW_REPO=str(root), GADFLOW_DATA_MIRROR=str(dataset_mirror("skab")), PREFECT_WORKER_QUERY_SECONDS="2")


@pytest.fixture(scope="module")
def server(project: Path):
    """(environment with PREFECT_API_URL, {worker name: log file}) of a running server, pools, deployments and workers."""
    env = base_env(project)
    port = free_loopback_port()
    api_url = f"http://127.0.0.1:{port}/api"
    logs = project / ".prefect"
    logs.mkdir(exist_ok=True)
    processes: list[subprocess.Popen] = []
    with open(logs / "server.log", "wb") as out:
        server_process = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--analytics-off"],
                                          cwd=project, env={**env, "PREFECT_API_URL": ""}, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_healthy(api_url, 90, server_process, logs / "server.log")
        env["PREFECT_API_URL"] = api_url
        for pool in ("gpu", "cpu"):
            run([str(BIN / "prefect"), "work-pool", "create", pool, "--type", "process"], project, env)
        run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], project, env)
        workers = {"gpu-1": "gpu", "gpu-2": "gpu", "cpu-1": "cpu"}
        for name, pool in workers.items():
            with open(logs / f"{name}.log", "wb") as out:
                processes.append(subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", pool, "--name", name, "--limit", "1"],
                                                  cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT))
        yield env, {name: logs / f"{name}.log" for name in workers}
    finally:
        for process in processes:  # workers first: a server stopped under them leaves their runs crashed
            stop(process)
        stop(server_process)


@pytest.mark.integration
def test_train_all_deployment_fans_the_cells_out_over_both_gpu_workers(project, server):
    env, worker_logs = server
    parameters = json.dumps({"experiments": list(CELLS)})
    result = run([str(BIN / "prefect"), "deployment", "run", "train-all/train-all", "--params", parameters, "--watch"], project, env, timeout=600)
    assert "Completed" in result.stdout, result.stdout[-3000:]
    for cell in CELLS:
        registered = json.loads((project / "outputs" / cell / "registered.json").read_text())
        assert registered["uri"] == f"models:/{cell}@candidate"
    submitted = {name: log.read_text().count("submitting flow run") for name, log in worker_logs.items()}
    assert submitted == {"gpu-1": 1, "gpu-2": 1, "cpu-1": 1}, submitted  # one cell on each gpu worker; train-all on the cpu one
