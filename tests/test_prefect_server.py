"""The deployments of prefect.yaml against a real `prefect server` on loopback, with two process workers on the
`gpu` pool and one on `cpu` (`prefect --no-prompt deploy --all`).

- train-all runs on the cpu worker and fans two smoke cells out through the `train` deployment; with `--limit 1`
  each gpu worker takes one of them.
- nightly-score (after train-all: it scores with the champions train-all registered) writes the scored partitions
  and quarantines a corrupt one; a second trigger writes nothing new.
- a gpu worker killed mid-training: the rerun on a new worker resumes from the last checkpoint.
Everything is stopped at the end, workers before the server. The tests run in file order.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from flows.local_server import free_loopback_port, stop, wait_until_healthy

from tests.helpers.project import BIN, copy_project, dataset_mirror, project_env

CELLS = ("rgbd-adgan", "skab-madgan")  # a rendered dataset and a small download: no large data needed


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args[:4])} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The tracked project files with the smoke overlay's settings as params.yaml, and the two cells' data prepared."""
    root = copy_project(tmp_path_factory.mktemp("server") / "repo", skip=("tests/", "docs/"))
    env = base_env(root)
    for step in (["generate", "rgbd"], ["prepare", "rgbd"], ["download", "skab"], ["prepare", "skab"]):
        run([str(BIN / "gadflow"), *step], root, env)
    return root


def base_env(root: Path) -> dict[str, str]:
    # the models' own log lines (e.g. "resumed from") reach the worker's output through prefect.yaml's job variables
    return project_env(root, GADFLOW_REPO=str(root), GADFLOW_DATA_MIRROR=str(dataset_mirror("skab")), PREFECT_WORKER_QUERY_SECONDS="2")


def start_worker(project: Path, env: dict[str, str], name: str, pool: str) -> subprocess.Popen:
    """A process worker in its own process group (so that killing it takes its flow runs with it)."""
    with open(project / ".prefect" / f"{name}.log", "wb") as out:
        return subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", pool, "--name", name, "--limit", "1"],
                                cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


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
        wait_until_healthy(f"{api_url}/health", 90, server_process, logs / "server.log", name="the Prefect server")
        env["PREFECT_API_URL"] = api_url
        for pool in ("gpu", "cpu"):
            run([str(BIN / "prefect"), "work-pool", "create", pool, "--type", "process"], project, env)
        run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], project, env)
        workers = {"gpu-1": "gpu", "gpu-2": "gpu", "cpu-1": "cpu"}
        started = {name: start_worker(project, env, name, pool) for name, pool in workers.items()}
        processes.extend(started.values())
        yield env, {name: logs / f"{name}.log" for name in workers}, started, processes
    finally:
        for process in processes:  # workers first: a server stopped under them leaves their runs crashed
            if process.poll() is None:
                stop(process)
        stop(server_process)


@pytest.mark.integration
def test_train_all_deployment_fans_the_cells_out_over_both_gpu_workers(project, server):
    env, worker_logs, _, _ = server
    parameters = json.dumps({"experiments": list(CELLS)})
    result = run([str(BIN / "prefect"), "deployment", "run", "train-all/train-all", "--params", parameters, "--watch"], project, env, timeout=600)
    assert "Completed" in result.stdout, result.stdout[-3000:]
    for cell in CELLS:
        registered = json.loads((project / "outputs" / cell / "registry" / "registered.json").read_text())
        assert registered["uri"] == f"models:/{cell}@candidate"
    submitted = {name: log.read_text().count("submitted to infrastructure") for name, log in worker_logs.items()}  # an aborted submission (a race lost to the other worker) does not count
    assert submitted == {"gpu-1": 1, "gpu-2": 1, "cpu-1": 1}, submitted  # one cell on each gpu worker; train-all on the cpu one


def _write_partitions(project: Path, incoming: Path) -> None:
    """rgbd-adgan: six test frames (.npy); skab-madgan: 60 raw rows of one SKAB file with ids (.parquet); plus a
    corrupt partition for rgbd-adgan."""
    from tasks.adapters import load_prepared

    (incoming / "rgbd-adgan").mkdir(parents=True)
    np.save(incoming / "rgbd-adgan" / "night-1.npy", np.asarray(load_prepared(project / "data/prepared/rgbd").test[40:46]))
    (incoming / "rgbd-adgan" / "night-2.npy").write_bytes(b"\x93NUMPY broken")
    channels = json.loads((project / "outputs/skab-madgan/model/windowing.json").read_text())["input_channels"]
    rows = pd.read_csv(project / "data/raw/skab/valve1/0.csv", sep=";").iloc[400:460]
    (incoming / "skab-madgan").mkdir(parents=True)
    rows[channels].assign(id=np.arange(1000, 1060)).to_parquet(incoming / "skab-madgan" / "night-1.parquet")


@pytest.mark.integration
def test_nightly_score_deployment_scores_new_partitions_once(project, server):
    env, worker_logs, _, _ = server
    incoming = project / "data" / "incoming"
    _write_partitions(project, incoming)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["nightly"].update(models=list(CELLS), max_flagged_fraction=1.0)
    (project / "params-nightly.yaml").write_text(yaml.safe_dump(params))
    command = [str(BIN / "prefect"), "deployment", "run", "nightly-score-from-params/nightly-score",
               "--param", "params_file=params-nightly.yaml", "--watch"]
    first = run(command, project, env, timeout=600)
    assert "Completed" in first.stdout, first.stdout[-3000:]
    scored = project / "outputs" / "nightly" / "scored"
    files = sorted(str(p.relative_to(scored)) for p in scored.rglob("*.parquet"))
    assert files == ["rgbd-adgan/v1/night-1.parquet", "skab-madgan/v1/night-1.parquet"], files
    skab = pd.read_parquet(scored / "skab-madgan/v1/night-1.parquet")
    assert skab["id"].tolist() == list(range(1000, 1060)) and set(skab["model_version"]) == {"1"}
    assert (skab["is_anomaly"] == (skab["score"] > skab["threshold"])).all()
    assert len(pd.read_parquet(scored / "rgbd-adgan/v1/night-1.parquet")) == 6
    quarantined = project / "outputs/nightly/quarantine/rgbd-adgan"
    assert (quarantined / "night-2.npy").is_file() and (quarantined / "night-2.npy.reason.txt").read_text().strip()
    stamps = {p: p.stat().st_mtime_ns for p in scored.rglob("*.parquet")}

    second = run(command, project, env, timeout=600)
    assert "Completed" in second.stdout, second.stdout[-3000:]
    assert {p: p.stat().st_mtime_ns for p in scored.rglob("*.parquet")} == stamps  # nothing new written
    assert worker_logs["cpu-1"].read_text().count("submitted to infrastructure") == 3  # train-all, then both nightly runs on the cpu pool


def _epochs_done(checkpoint: Path) -> int:
    try:
        return int(torch.load(checkpoint, weights_only=True)["epochs_done"])
    except (FileNotFoundError, RuntimeError, EOFError, KeyError):
        return 0


def _flow_run_processes(flow_run_id: str) -> list[int]:
    """PIDs of the processes running flow run ``flow_run_id`` (Prefect puts its id in their environment)."""
    marker = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "environ").read_bytes().split(b"\0"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


@pytest.mark.integration
def test_a_worker_killed_mid_training_resumes_from_its_checkpoint(project, server):
    """rgbd-resume: rgbd-adgan's settings with 12 epochs. Once a checkpoint exists, both gpu workers and the flow
    run's processes (a process worker runs each in its own process group) are SIGKILLed, as when the machine dies;
    the rerun on a fresh worker starts after the checkpoint's epoch and finishes."""
    env, _, started, processes = server
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["experiments"]["rgbd-resume"] = copy.deepcopy(params["experiments"]["rgbd-adgan"])
    params["experiments"]["rgbd-resume"]["model"]["training"]["epochs"] = 12
    (project / "params-resume.yaml").write_text(yaml.safe_dump(params))
    command = [str(BIN / "prefect"), "deployment", "run", "experiment-from-params/train",
               "--param", "experiment=rgbd-resume", "--param", "params_file=params-resume.yaml"]
    created = run(command, project, env).stdout
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", created).group(1)
    checkpoint = project / "outputs/rgbd-resume/train/checkpoints/last.pt"
    deadline = time.monotonic() + 300
    while _epochs_done(checkpoint) < 1:
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.2)
    for name in ("gpu-1", "gpu-2"):
        os.killpg(started[name].pid, signal.SIGKILL)
        started[name].wait()
    victims = _flow_run_processes(flow_run_id)
    assert victims, "the flow run's process was not found"
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
    time.sleep(1)
    assert not _flow_run_processes(flow_run_id)
    at_kill = _epochs_done(checkpoint)
    assert 1 <= at_kill < 12, at_kill
    fresh = start_worker(project, env, "gpu-3", "gpu")
    processes.append(fresh)
    result = run([*command, "--watch"], project, env, timeout=600)
    assert "Completed" in result.stdout, result.stdout[-3000:]
    log = (project / ".prefect" / "gpu-3.log").read_text()
    resumed = [line for line in log.splitlines() if "resumed from" in line]
    assert resumed, log[-3000:]
    assert f"after epoch {at_kill} of 12" in resumed[0], resumed[0]
    assert _epochs_done(checkpoint) == 12
    assert json.loads((project / "outputs/rgbd-resume/registry/registered.json").read_text())["uri"] == "models:/rgbd-resume@candidate"
