"""RGB-D boxes vs spheres: the image systems on rgbd beside their reference detector, on the default render and on
renders with other seeds.

The render seed (generate.<source>.seed) is the benchmark's own change, recorded per row: a fresh render is new
data drawn from the same scene model, so a setting that only suits one render shows up here. Each experiment's
reference detectors (rgbd-knn) run first on the same render, and its row carries their AUROC and the gap to them.
The pipeline's own steps do the work (prepare, then run_experiment: train, calibrate, score, report; nothing is
registered) with the experiments' settings of params.yaml. Prints a line per run, then one JSON object last.

    python benchmarks/rgbd.py                          # rgbd-adgan and rgbd-knn, on params' render seed and the next one
    python benchmarks/rgbd.py --render-seeds 0 1 2
    python benchmarks/rgbd.py --quick                  # the smoke overlay's tiny settings
"""

from __future__ import annotations

import time
from pathlib import Path

import common

log = common.log


def run_render(loaded: common.Settings, data: str, seed: int, experiments: list[str]) -> list[dict]:
    source = loaded.params.prepare[data].source
    params = loaded.changed({f"generate.{source}.seed": seed})
    common.prepare(params, data)
    rows = []
    for experiment in experiments:
        start = time.perf_counter()
        metrics = common.run(params, experiment, outputs=Path(f"outputs/render{seed}"))
        rows.append({
            "experiment": experiment, "render_seed": seed, "auroc": metrics["auroc"], "auprc": metrics["auprc"],
            "nominal_fpr": metrics["nominal_fpr"], "fpr": {m: v["fpr"] for m, v in metrics["thresholds"].items()},
            "reference": common.reference_figures(metrics),
            "seconds": time.perf_counter() - start,
        })
        row = rows[-1]
        log.info("%s render %d: AUROC %.4f  AUPRC %.4f  FPR %s  %.0f s | %s", experiment, seed, row["auroc"], row["auprc"],
                 " / ".join(f"{m} {v:.4f}" for m, v in row["fpr"].items()), row["seconds"], common.gaps_text(row["reference"]))
    return rows


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--experiment", nargs="+", default=["rgbd-adgan"], help="experiments on one generated image set")
    parser.add_argument("--render-seeds", type=int, nargs="+", default=None, help="default: the params' render seed, then the next one")
    args = parser.parse_args()
    loaded = common.settings(args)
    base = loaded.params
    datas = {base.experiments[e].data for e in args.experiment}
    if len(datas) != 1 or base.prepare[next(iter(datas))].source not in base.generate:
        parser.error(f"{args.experiment}: the experiments must share one generated data set (params `generate`)")
    data = datas.pop()
    default_seed = base.generate[base.prepare[data].source].seed
    seeds = args.render_seeds or [default_seed, default_seed + 1]
    experiments = common.with_references(base, args.experiment)
    rows: list[dict] = []
    for seed in seeds:
        with common.workspace():  # each render in its own folder: a new render is new raw data
            rows += run_render(loaded, data, seed, experiments)
    common.emit("rgbd", loaded, {"render_seeds": seeds, "experiments": experiments, "rows": rows,
                                 "total_seconds": float(sum(r["seconds"] for r in rows))})


if __name__ == "__main__":
    main()
