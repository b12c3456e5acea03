"""Wall time of the README's main job (`dvc repro`) in a fresh clone of this repository.

Clones the committed HEAD into a temporary folder and times `gadflow repro` there (the `make run`
job: `dvc repro` with one local Prefect server for every stage) with the venv's tools, then times a
second one (which must do nothing). `--plain-dvc` times bare `dvc repro` instead (a temporary Prefect
server per stage). Data come from $GADFLOW_DATA_MIRROR (default ../shared/datasets). One JSON object
is the last line of output.

    python benchmarks/pipeline_wall_time.py            # default params.yaml (target: < 30 min)
    python benchmarks/pipeline_wall_time.py --quick    # tests/fixtures/params-smoke.yaml (target: < 5 min)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="use the smoke params")
    parser.add_argument("--plain-dvc", action="store_true", help="time bare `dvc repro` (a temporary Prefect server per stage)")
    parser.add_argument("--log", type=Path, help="also write the first repro's output here (its log lines carry the time of day)")
    args = parser.parse_args()
    command = [str(BIN / "dvc"), "repro"] if args.plain_dvc else [str(BIN / "gadflow"), "repro"]
    with tempfile.TemporaryDirectory(prefix="gadflow-walltime-") as tmp:
        clone = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        if args.quick:
            shutil.copy(REPO / "tests" / "fixtures" / "params-smoke.yaml", clone / "params.yaml")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "PREFECT_API"))}
        env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PREFECT_HOME=str(clone / ".prefect"),
                   GADFLOW_DATA_MIRROR=os.environ.get("GADFLOW_DATA_MIRROR", str(REPO.parent / "shared" / "datasets")),
                   DO_NOT_TRACK="true", MLFLOW_DISABLE_TELEMETRY="true", PREFECT_SERVER_ANALYTICS_ENABLED="false", DVC_NO_ANALYTICS="1")
        first_s, first = timed(command, clone, env)
        if args.log is not None:
            args.log.write_text(first.stdout + first.stderr)
        if first.returncode != 0:
            sys.stderr.write(first.stdout[-3000:] + first.stderr[-3000:])
            raise SystemExit(f"{' '.join(command[-2:])} failed with exit code {first.returncode}")
        second_s, second = timed(command, clone, env)
        stages = [line.split("'")[1] for line in first.stdout.splitlines() if line.startswith("Running stage")]
        metrics = {p.parent.parent.name: json.loads(p.read_text()) for p in (clone / "outputs").glob("*/report/metrics.json")}
    print(json.dumps({
        "benchmark": "pipeline_wall_time",
        "quick": args.quick,
        "command": " ".join(Path(command[0]).name.split() + command[1:]),
        "dvc_repro_seconds": round(first_s, 1),
        "second_dvc_repro_seconds": round(second_s, 1),
        "second_repro_ran_stages": "Running stage" in second.stdout,
        "stages": stages,
        "auroc": {name: round(m["auroc"], 4) for name, m in metrics.items()},
        "achieved_fpr": {name: {method: round(v["fpr"], 4) for method, v in m["thresholds"].items()} for name, m in metrics.items()},
        "precision_recall_f1": {name: [round(m[k], 4) for k in ("precision", "recall", "f1")] for name, m in metrics.items()},
        "series": {name: {"f1_far_mar_summed_over_series": [round(m["series"]["aggregated_over_series"][k], 4) for k in ("f1", "far", "mar")],
                          "auprc": round(m["auprc"], 4), "event_recall": round(m["series"]["overall"]["event_recall"], 4),
                          "point_adjusted_f1_and_random": [round(m["series"]["overall"][k], 4) for k in ("point_adjusted_f1", "point_adjusted_f1_random_scores")]}
                   for name, m in metrics.items() if "series" in m},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }))


if __name__ == "__main__":
    main()
