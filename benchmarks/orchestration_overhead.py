"""Orchestration overhead: one training cell through a Prefect work pool against the same cell as a bare Python call.

In a fresh clone of the committed HEAD, whose params.yaml holds the settings the options name (the clone's own
params.yaml by default; --quick: the smoke overlay merged over it by `gadflow params --overlay`, as the tests do;
--set changes on top), downloads (or renders) and prepares the cell's data, then times, for the cell (default
rgbd-adgan), each ``--repeats`` times and alternating:

- **bare:** a new Python process that runs the experiment as plain Python, ``tasks.steps.run.run_experiment``
  (train -> calibrate -> score -> report -> register -> promote), with no Prefect engine or server;
- **pool:** ``prefect deployment run experiment-from-params/train --param experiment=<cell> --watch`` (the same
  run_experiment with the steps as Prefect tasks) against a real ``prefect server`` on loopback with one process
  worker on the ``gpu`` pool (started before timing, and polling every ``--query-seconds``; Prefect's default is 10 s).

The cell's outputs and MLflow store are removed before every run, so each one trains and registers from scratch.
Issue 6's targets: overhead <= 15 s per cell, and <= 5 % of a 5-minute cell. One JSON object is the last line.

    python benchmarks/orchestration_overhead.py [--experiment rgbd-adgan] [--repeats 3] [--query-seconds 10]
    python benchmarks/orchestration_overhead.py --quick --repeats 1      # the smoke cell (2-3 minutes)
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

import common

BIN = Path(sys.executable).parent

BARE = """
import sys
from tasks.params import load_params
from tasks.steps.run import run_experiment

params = load_params("params.yaml")
run_experiment(params.experiment(sys.argv[1]), params)
"""
FRESH = ("outputs", "mlflow.db", "mlartifacts", "mlruns")  # removed before every run: it trains and registers from scratch


def run(cmd: list[str], cwd: Path, env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    run(cmd, cwd, env)
    return time.perf_counter() - start


def fresh(clone: Path) -> None:
    for name in FRESH:
        path = clone / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--experiment", default="rgbd-adgan", help="the cell (an experiment of params.yaml; default rgbd-adgan)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--query-seconds", type=float, default=10.0, help="the worker's polling interval (PREFECT_WORKER_QUERY_SECONDS)")
    args = parser.parse_args()
    loaded = common.settings(args)
    from flows.local_server import free_loopback_port, stop, wait_until_healthy

    with tempfile.TemporaryDirectory(prefix="gadflow-orchestration-") as tmp:
        clone = common.clone_head(Path(tmp) / "repo", args, loaded)
        clone_params = yaml.safe_load((clone / "params.yaml").read_text())
        if args.experiment not in clone_params["experiments"]:
            parser.error(f"{args.experiment}: not an experiment of the clone's params.yaml")
        data = clone_params["experiments"][args.experiment]["data"]
        source = clone_params["prepare"][data]["source"]
        generated = source in (clone_params.get("generate") or {})
        port = free_loopback_port()
        api_url = f"http://127.0.0.1:{port}/api"
        env = common.project_env(clone, GADFLOW_REPO=str(clone), PREFECT_WORKER_QUERY_SECONDS=str(args.query_seconds))
        for step in (["generate", source], ["prepare", data]) if generated else (["download", source], ["prepare", data]):
            run([str(BIN / "gadflow"), *step], clone, env)
        server_env = {**env, "PREFECT_API_URL": ""}
        server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--analytics-off"],
                                  cwd=clone, env=server_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        worker = None
        try:
            wait_until_healthy(f"{api_url}/health", 90, server, name="the Prefect server")
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
                    fresh(clone)  # train and register from scratch every time
                    times[kind].append(timed(cmd, clone, cmd_env))
                    print(f"{kind}: {times[kind][-1]:.1f} s", flush=True)
        finally:
            if worker is not None:
                stop(worker)
            stop(server)
    bare, pool = statistics.median(times["bare"]), statistics.median(times["pool"])
    overhead = pool - bare
    summary = {"experiment": args.experiment, "repeats": args.repeats,
               "worker_query_seconds": args.query_seconds, "bare_seconds": times["bare"], "pool_seconds": times["pool"],
               "median_bare_seconds": bare, "median_pool_seconds": pool, "median_overhead_seconds": overhead,
               "overhead_fraction_of_a_5_minute_cell": overhead / 300.0, "targets": {"overhead_seconds": 15.0, "fraction_of_5_minutes": 0.05}}
    print(f"median: bare {bare:.1f} s, through the pool {pool:.1f} s, overhead {overhead:.1f} s ({100 * overhead / 300:.1f} % of 5 minutes)")
    common.emit("orchestration_overhead", loaded, summary)


if __name__ == "__main__":
    main()
