"""Orchestration overhead: one training cell through a Prefect work pool against the same cell as a bare Python call.

In a fresh clone of the committed HEAD with the smoke params, renders and prepares the RGB-D data (no download),
then times, for the cell (default rgbd-adgan), each ``--repeats`` times and alternating:

- **bare:** a new Python process that runs the experiment's steps as plain functions (the tasks' ``.fn``:
  train -> calibrate -> score -> evaluate -> register), with no Prefect engine or server;
- **pool:** ``prefect deployment run experiment-from-params/train --param experiment=<cell> --watch`` against a
  real ``prefect server`` on loopback with one process worker on the ``gpu`` pool (started before timing, and
  polling every ``--query-seconds``; Prefect's default is 10 s).

The cell's outputs and MLflow store are removed before every run, so each one trains from scratch. Issue 6's
targets: overhead <= 15 s per cell, and <= 5 % of a 5-minute cell. One JSON object is the last line.

    python benchmarks/orchestration_overhead.py [--experiment rgbd-adgan] [--repeats 3] [--query-seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

BARE = """
import sys
from tasks.calibrate import calibrate_model
from tasks.config import load_params
from tasks.evaluate import evaluate_scores
from tasks.layout import experiment_dir, prepared_dir
from tasks.register import register_model
from tasks.score import score_test_set
from tasks.train import train_model

params = load_params("params.yaml")
exp = params.experiment(sys.argv[1])
data_dir, out_dir = prepared_dir(exp.train.data), experiment_dir(exp.name)
model_dir = train_model.fn(exp.name, exp.train, data_dir, out_dir)
calibrate_model.fn(exp.calibrate, model_dir, data_dir, out_dir)
scores = score_test_set.fn(model_dir, data_dir, out_dir, exp.evaluate.score_batch_size)
report = evaluate_scores.fn(exp.name, exp.evaluate, scores, model_dir, data_dir, out_dir)
register_model.fn(exp, params.registry, model_dir, report, out_dir)
"""


def run(cmd: list[str], cwd: Path, env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    run(cmd, cwd, env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="rgbd-adgan")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--query-seconds", type=float, default=10.0, help="the worker's polling interval (PREFECT_WORKER_QUERY_SECONDS)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from flows.local_server import free_loopback_port, stop, wait_until_healthy

    with tempfile.TemporaryDirectory(prefix="gadflow-orchestration-") as tmp:
        clone = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        shutil.copy(REPO / "tests" / "fixtures" / "params-smoke.yaml", clone / "params.yaml")
        port = free_loopback_port()
        api_url = f"http://127.0.0.1:{port}/api"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "PREFECT_API", "GADFLOW_STAGE"))}
        env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PREFECT_HOME=str(clone / ".prefect"), GADFLOW_REPO=str(clone),
                   DO_NOT_TRACK="true", MLFLOW_DISABLE_TELEMETRY="true", PREFECT_SERVER_ANALYTICS_ENABLED="false",
                   DVC_NO_ANALYTICS="1", PREFECT_WORKER_QUERY_SECONDS=str(args.query_seconds))
        data = run([str(BIN / "python"), "-c", "from tasks.config import load_params; import sys; "
                    "print(load_params('params.yaml').train[sys.argv[1]].data)", args.experiment], clone, env).stdout.strip()
        for step in (["generate", data], ["prepare", data]) if data == "rgbd" else (["download", data], ["prepare", data]):
            run([str(BIN / "gadflow"), *step], clone, env)
        server_env = {**env, "PREFECT_API_URL": ""}
        server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--analytics-off"],
                                  cwd=clone, env=server_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        worker = None
        try:
            wait_until_healthy(api_url, 90, server)
            env["PREFECT_API_URL"] = api_url
            run([str(BIN / "prefect"), "work-pool", "create", "gpu", "--type", "process"], clone, env)
            run([str(BIN / "prefect"), "--no-prompt", "deploy", "--name", "train"], clone, env)
            worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "gpu", "--limit", "1"], cwd=clone, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(5)
            bare_env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
            bare_cmd = [str(BIN / "python"), "-c", BARE, args.experiment]
            pool_cmd = [str(BIN / "prefect"), "deployment", "run", "experiment-from-params/train", "--param",
                        f"experiment={args.experiment}", "--watch"]
            times: dict[str, list[float]] = {"bare": [], "pool": []}
            for _ in range(args.repeats):
                for kind, cmd, cmd_env in (("bare", bare_cmd, bare_env), ("pool", pool_cmd, env)):
                    shutil.rmtree(clone / "outputs", ignore_errors=True)  # train from scratch every time
                    times[kind].append(timed(cmd, clone, cmd_env))
                    print(f"{kind}: {times[kind][-1]:.1f} s", flush=True)
        finally:
            if worker is not None:
                stop(worker)
            stop(server)
    bare, pool = statistics.median(times["bare"]), statistics.median(times["pool"])
    overhead = pool - bare
    summary = {"benchmark": "orchestration_overhead", "experiment": args.experiment, "repeats": args.repeats,
               "worker_query_seconds": args.query_seconds, "bare_seconds": times["bare"], "pool_seconds": times["pool"],
               "median_bare_seconds": bare, "median_pool_seconds": pool, "median_overhead_seconds": overhead,
               "overhead_fraction_of_a_5_minute_cell": overhead / 300.0, "targets": {"overhead_seconds": 15.0, "fraction_of_5_minutes": 0.05},
               "machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    print(f"median: bare {bare:.1f} s, through the pool {pool:.1f} s, overhead {overhead:.1f} s ({100 * overhead / 300:.1f} % of 5 minutes)")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
