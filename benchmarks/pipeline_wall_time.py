"""Wall time of the README's main job (`gadflow repro`) in a fresh clone of this repository.

Clones the committed HEAD into a temporary folder and times `gadflow repro` there (the `make run` job: dvc.yaml
written from params.yaml, then `dvc repro` with every stage in a child of one warm stage runner; no Prefect server)
with the venv's tools, then times a second one (which must do nothing). `--plain-dvc` times bare `dvc repro` instead
(after `gadflow stages` writes dvc.yaml; each stage a fresh `gadflow` process). The clone's params.yaml holds the
settings the options name: the clone's own params.yaml by default; `--quick` writes it as params.yaml with the smoke
overlay merged (`gadflow params --overlay tests/fixtures/params-smoke.yaml`, run in the clone); --overlay and --set
add to it. Data come from $GADFLOW_DATA_MIRROR (default ../shared/datasets). Records the stages that ran and, per
experiment, the metrics of outputs/<e>/report/metrics.json. One JSON object is the last line of output.

    python benchmarks/pipeline_wall_time.py            # default params.yaml (target: < 30 min)
    python benchmarks/pipeline_wall_time.py --quick    # the smoke overlay (target: < 5 min)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

BIN = Path(sys.executable).parent


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, result


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--plain-dvc", action="store_true", help="time bare `dvc repro` after `gadflow stages` (no warm stage runner)")
    parser.add_argument("--log", type=Path, help="also write the first repro's output here (its log lines carry the time of day)")
    args = parser.parse_args()
    loaded = common.settings(args)
    command = [str(BIN / "dvc"), "repro"] if args.plain_dvc else [str(BIN / "gadflow"), "repro"]
    with tempfile.TemporaryDirectory(prefix="gadflow-walltime-") as tmp:
        clone = common.clone_head(Path(tmp) / "repo", args, loaded)
        env = common.project_env(clone)
        if args.plain_dvc:  # dvc.yaml for the clone's params.yaml, as `gadflow repro` writes it first
            stages = subprocess.run([str(BIN / "gadflow"), "stages"], cwd=clone, env=env, capture_output=True, text=True)
            if stages.returncode != 0:
                raise SystemExit(f"gadflow stages failed with exit code {stages.returncode}:\n{stages.stdout[-2000:]}{stages.stderr[-2000:]}")
        first_s, first = timed(command, clone, env)
        if args.log is not None:
            args.log.write_text(first.stdout + first.stderr)
        if first.returncode != 0:
            sys.stderr.write(first.stdout[-3000:] + first.stderr[-3000:])
            raise SystemExit(f"{' '.join(Path(command[0]).name.split() + command[1:])} failed with exit code {first.returncode}")
        second_s, second = timed(command, clone, env)
        stages = [line.split("'")[1] for line in first.stdout.splitlines() if line.startswith("Running stage")]
        metrics = {p.parent.parent.name: json.loads(p.read_text()) for p in sorted((clone / "outputs").glob("*/report/metrics.json"))}
    common.emit("pipeline_wall_time", loaded, {
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
    })


if __name__ == "__main__":
    main()
