"""MNIST one-class benchmark (Deep SVDD / ADGAN protocol) for the image systems.

For each digit d: normal = d, train on its training images minus a seeded 10 % normal calibration split, test on all
10,000 test images. Runs the pipeline's own steps (prepare, then run_experiment: train, calibrate, score, report) with
the experiments' settings of params.yaml; nothing is registered. The digit is the benchmark's own change
(prepare.<data>.normal_classes), recorded per row. Prints a line per run, then one JSON object as the last line.

    python benchmarks/mnist_one_class.py                      # mnist-dcgan, all ten digits
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
            "fpr_calibration": thresholds["calibration"]["fpr"], "fpr_monte_carlo": thresholds["monte_carlo"]["fpr"],
            "f1_calibration": thresholds["calibration"]["f1"], "f1_monte_carlo": thresholds["monte_carlo"]["f1"],
            "seconds_per_epoch": float(np.mean([h["seconds"] for h in metrics["history"]])),
            "seconds": time.perf_counter() - start,  # training (none for an experiment that reused a sibling's GAN) to report
        })
    return rows


def summarise(experiment: str, rows: list[dict]) -> dict:
    return {
        "experiment": experiment,
        "digits": [r["digit"] for r in rows],
        "auroc_per_digit": [round(r["auroc"], 4) for r in rows],
        "mean_auroc": float(np.mean([r["auroc"] for r in rows])),
        "nominal_fpr": rows[0]["nominal_fpr"],
        "fpr_calibration_per_digit": [round(r["fpr_calibration"], 4) for r in rows],
        "fpr_monte_carlo_per_digit": [round(r["fpr_monte_carlo"], 4) for r in rows],
        "mean_abs_fpr_error_calibration": float(np.mean([abs(r["fpr_calibration"] - r["nominal_fpr"]) for r in rows])),
        "mean_abs_fpr_error_monte_carlo": float(np.mean([abs(r["fpr_monte_carlo"] - r["nominal_fpr"]) for r in rows])),
        "mean_f1_calibration": float(np.mean([r["f1_calibration"] for r in rows])),
    }


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--experiment", nargs="+", default=["mnist-dcgan"],
                        help="one or more experiments on MNIST images; later ones reuse the first one's GAN when their training settings match")
    parser.add_argument("--digits", type=int, nargs="*", default=None, help="default: all ten (--quick: 0 and 1)")
    args = parser.parse_args()
    loaded = common.settings(args)
    digits = args.digits if args.digits is not None else ([0, 1] if args.quick else list(range(10)))
    rows: list[dict] = []
    with common.workspace():
        for digit in digits:
            for row in run_digit(loaded, digit, args.experiment):
                rows.append(row)
                log.info("%s digit %d: AUROC %.4f  AUPRC %.4f  FPR cal %.4f / MC %.4f (nominal %.2f)  %.0f s", row["experiment"], digit,
                         row["auroc"], row["auprc"], row["fpr_calibration"], row["fpr_monte_carlo"], row["nominal_fpr"], row["seconds"])
    common.emit("mnist_one_class", loaded, {"digits": digits, "experiments": [summarise(e, [r for r in rows if r["experiment"] == e]) for e in args.experiment],
                                            "total_seconds": float(sum(r["seconds"] for r in rows)), "rows": rows})


if __name__ == "__main__":
    main()
