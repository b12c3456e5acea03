"""MNIST one-class benchmark (Deep SVDD / ADGAN protocol) for the image systems.

For each digit d: normal = d, train on its training images minus a seeded 10 % normal calibration split, test on all
10,000 test images. Runs the pipeline's own steps (prepare, then run_experiment: train, calibrate, score, report) with
the experiments' settings of params.yaml; nothing is registered. Each GAN's reference detectors (knn, pca) run
first on the same digit, and its row carries their AUROC and the gap to them. The digit is the benchmark's own change
(prepare.<data>.normal_classes), recorded per row. Prints a line per run, then one JSON object as the last line.

    python benchmarks/mnist_one_class.py                      # every experiment on `mnist`, all ten digits (hours on 2 cores)
    python benchmarks/mnist_one_class.py --experiment mnist-ganomaly   # one GAN and its references (mnist-knn, mnist-pca)
    python benchmarks/mnist_one_class.py --quick              # the smoke overlay's tiny settings, digits 0 and 1
    python benchmarks/mnist_one_class.py --experiment mnist-adgan mnist-anogan --digits 4 5
                                                              # ADGAN and AnoGAN scored on one trained GAN per digit
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import common

log = common.log


def run_digit(loaded: common.Settings, digit: int, experiments: list[str]) -> list[dict]:
    """One row per experiment. An experiment whose GAN a sibling already trained (same model family, training settings
    and data) reuses that finished checkpoint (tasks.steps.train), so they differ only in scoring."""
    base = loaded.params
    data_names = {base.experiments[e].data for e in experiments}
    params = loaded.changed({f"prepare.{name}.normal_classes": [digit] for name in data_names})
    for name in data_names:
        common.prepare(params, name)
    rows = []
    for experiment in experiments:
        start = time.perf_counter()
        metrics = common.run(params, experiment, outputs=Path(f"outputs/digit{digit}"))
        thresholds = metrics["thresholds"]
        rows.append({
            "experiment": experiment, "digit": digit, "auroc": metrics["auroc"], "auprc": metrics["auprc"], "nominal_fpr": metrics["nominal_fpr"],
            "fpr": {m: v["fpr"] for m, v in thresholds.items()}, "f1": {m: v["f1"] for m, v in thresholds.items()},  # per threshold method
            "validation_auroc": metrics["validation"].get("auroc"),  # calibration normals vs the validation split (the declared validation signal)
            "reference": common.reference_figures(metrics),
            "selection": common.selected_epoch(metrics),  # the epoch kept, and the signal that chose it (never test labels)
            "seconds_per_epoch": float(np.mean([h["seconds"] for h in metrics["history"]])) if metrics["history"] else None,
            "seconds": time.perf_counter() - start,  # training (none for an experiment that reused a sibling's GAN) to report
        })
    return rows


def summarise(experiment: str, rows: list[dict]) -> dict:
    methods = list(rows[0]["fpr"])
    nominal = rows[0]["nominal_fpr"]
    out = {
        "experiment": experiment,
        "digits": [r["digit"] for r in rows],
        "auroc_per_digit": [round(r["auroc"], 4) for r in rows],
        "mean_auroc": float(np.mean([r["auroc"] for r in rows])),
        "validation_auroc_per_digit": [None if r["validation_auroc"] is None else round(r["validation_auroc"], 4) for r in rows],
        "mean_validation_auroc": None if any(r["validation_auroc"] is None for r in rows) else float(np.mean([r["validation_auroc"] for r in rows])),
        "nominal_fpr": nominal,
        "fpr_per_digit": {m: [round(r["fpr"][m], 4) for r in rows] for m in methods},
        "mean_abs_fpr_error": {m: float(np.mean([abs(r["fpr"][m] - nominal) for r in rows])) for m in methods},
        "mean_f1": {m: float(np.mean([r["f1"][m] for r in rows])) for m in methods},
        "selected_epoch_per_digit": [r["selection"]["epoch"] for r in rows],
    }
    references = rows[0]["reference"]
    out["reference"] = {ref: {"mean_auroc": float(np.mean([r["reference"][ref]["auroc"] for r in rows])),
                              "mean_gap": float(np.mean([r["reference"][ref]["auroc_gap"] for r in rows])),
                              "digits_at_or_above": int(sum(r["reference"][ref]["auroc_gap"] >= 0 for r in rows))}
                        for ref in references}
    return out


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--experiment", nargs="+", default=None,
                        help="experiments on MNIST images (default: every one on the data `mnist`); later ones reuse the first one's GAN "
                             "when their training settings match; their reference detectors always run first")
    parser.add_argument("--digits", type=int, nargs="*", default=None, help="default: all ten (--quick: 0 and 1)")
    args = parser.parse_args()
    loaded = common.settings(args)
    base = loaded.params
    requested = args.experiment or [e for e, exp in base.experiments.items() if exp.data == "mnist"]
    experiments = common.with_references(base, requested)
    digits = args.digits if args.digits is not None else ([0, 1] if args.quick else list(range(10)))
    rows: list[dict] = []
    with common.workspace():
        for digit in digits:
            for row in run_digit(loaded, digit, experiments):
                rows.append(row)
                fprs = " / ".join(f"{m} {v:.4f}" for m, v in row["fpr"].items())
                kept = row["selection"]
                chosen = f"  epoch {kept['epoch']} kept ({kept['signal']})" if kept["rule"] == "best" else ""
                log.info("%s digit %d: AUROC %.4f  AUPRC %.4f  FPR %s (nominal %.2f)%s  %.0f s | %s", row["experiment"], digit,
                         row["auroc"], row["auprc"], fprs, row["nominal_fpr"], chosen, row["seconds"], common.gaps_text(row["reference"]))
    common.emit("mnist_one_class", loaded, {"digits": digits, "experiments": [summarise(e, [r for r in rows if r["experiment"] == e]) for e in experiments],
                                            "total_seconds": float(sum(r["seconds"] for r in rows)), "rows": rows})


if __name__ == "__main__":
    main()
