"""MNIST one-class benchmark (Deep SVDD / ADGAN protocol) for the DCGAN, ADGAN and AnoGAN systems.

For each digit d: normal = d, train on its training images minus a seeded 10 % normal calibration
split, test on all 10,000 test images. Runs the pipeline's own task functions (prepare, train,
calibrate, score, evaluate) with the experiment settings of params.yaml; nothing is registered.
Prints a table, then one JSON object as the last line.

    python benchmarks/mnist_one_class.py              # all ten digits, default params
    python benchmarks/mnist_one_class.py --quick      # two digits, tiny settings, < 1 minute
    python benchmarks/mnist_one_class.py --experiment mnist-adgan mnist-anogan --digits 4 5
                                                      # ADGAN and AnoGAN scored on one trained GAN per digit
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tasks.calibrate import calibrate_model  # noqa: E402
from tasks.config import load_params  # noqa: E402
from tasks.download import download_dataset  # noqa: E402
from tasks.evaluate import evaluate_scores  # noqa: E402
from tasks.prepare import prepare_dataset  # noqa: E402
from tasks.score import score_test_set  # noqa: E402
from tasks.train import train_model  # noqa: E402

log = logging.getLogger("benchmark")


def run_digit(digit: int, params, exp_names: list[str], raw: Path, work: Path, quick: bool) -> list[dict]:
    """One row per experiment. An experiment whose GAN a sibling already trained (same model family,
    training settings and data) reuses that finished checkpoint (train_model), so they differ only in scoring."""
    rows = []
    prepared: dict[str, Path] = {}  # prepare section -> this digit's prepared data, built once
    for exp_name in exp_names:
        exp = params.experiment(exp_name)
        train = exp.train
        calibrate = exp.calibrate
        if quick:  # tiny settings: a latent search over all 10,000 test images gets 2 steps and 1 restart
            search = {"search": train.search.model_copy(update={"steps": 2, "n_seeds": 1})} if train.search else {}
            train = train.model_copy(update={"epochs": 1, "base_channels": 8, "batch_size": 128, **search})
            calibrate = calibrate.model_copy(update={"mc_samples": 1000 if train.search is None else 200})
        name = f"mnist{digit}"
        if exp.train.data not in prepared:
            prep = params.prepare[exp.train.data].model_copy(update={"normal_classes": [digit]})
            prepared[exp.train.data] = prepare_dataset.fn(name, prep, params.download[prep.source], raw, work / "prepared" / name / exp.train.data)
        data_dir = prepared[exp.train.data]
        out_dir = work / "outputs" / name / exp_name
        start = time.perf_counter()
        model_dir = train_model.fn(name, train, data_dir, out_dir)
        train_seconds = time.perf_counter() - start
        calibrate_model.fn(calibrate, model_dir, data_dir, out_dir)
        start = time.perf_counter()
        scores = score_test_set.fn(model_dir, data_dir, out_dir, exp.evaluate.score_batch_size)
        score_seconds = time.perf_counter() - start
        report = evaluate_scores.fn(name, exp.evaluate, scores, model_dir, data_dir, out_dir)
        metrics = json.loads((report / "metrics.json").read_text())
        history = json.loads((out_dir / "train" / "history.json").read_text())
        rows.append({
            "experiment": exp_name,
            "digit": digit,
            "auroc": metrics["auroc"],
            "auprc": metrics["auprc"],
            "nominal_fpr": metrics["nominal_fpr"],
            "fpr_calibration": metrics["thresholds"]["calibration"]["fpr"],
            "fpr_monte_carlo": metrics["thresholds"]["monte_carlo"]["fpr"],
            "f1_calibration": metrics["thresholds"]["calibration"]["f1"],
            "f1_monte_carlo": metrics["thresholds"]["monte_carlo"]["f1"],
            "seconds_per_epoch": float(np.mean([h["seconds"] for h in history])),
            "train_seconds": train_seconds,  # ~0 for an experiment that reused the first one's GAN
            "test_images_per_second": 10_000 / score_seconds,
        })
    return rows


def summarise(exp_name: str, rows: list[dict]) -> dict:
    return {
        "experiment": exp_name,
        "digits": [r["digit"] for r in rows],
        "auroc_per_digit": [round(r["auroc"], 4) for r in rows],
        "mean_auroc": float(np.mean([r["auroc"] for r in rows])),
        "nominal_fpr": rows[0]["nominal_fpr"],
        "fpr_calibration_per_digit": [round(r["fpr_calibration"], 4) for r in rows],
        "fpr_monte_carlo_per_digit": [round(r["fpr_monte_carlo"], 4) for r in rows],
        "mean_abs_fpr_error_calibration": float(np.mean([abs(r["fpr_calibration"] - r["nominal_fpr"]) for r in rows])),
        "mean_abs_fpr_error_monte_carlo": float(np.mean([abs(r["fpr_monte_carlo"] - r["nominal_fpr"]) for r in rows])),
        "mean_f1_calibration": float(np.mean([r["f1_calibration"] for r in rows])),
        "mean_test_images_per_second": float(np.mean([r["test_images_per_second"] for r in rows])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--experiment", nargs="+", default=["mnist-dcgan"],
                        help="one or more experiments; later ones reuse the first one's GAN when their training settings match")
    parser.add_argument("--digits", type=int, nargs="*", default=None)
    parser.add_argument("--quick", action="store_true", help="two digits, tiny settings (< 1 minute)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    os.environ.setdefault("GADFLOW_DATA_MIRROR", str(REPO.parent / "shared" / "datasets"))
    params = load_params(args.params)
    digits = args.digits if args.digits is not None else ([0, 1] if args.quick else list(range(10)))
    source = params.prepare[params.experiment(args.experiment[0]).train.data].source

    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="gadflow-bench-") as tmp:
        work = Path(tmp)
        raw = download_dataset.fn(source, params.download[source], work / "raw" / source)
        for digit in digits:
            for row in run_digit(digit, params, args.experiment, raw, work, args.quick):
                rows.append(row)
                log.info("%s digit %d: AUROC %.4f  AUPRC %.4f  FPR cal %.4f / MC %.4f (nominal %.2f)  %.0f test images/s",
                         row["experiment"], digit, row["auroc"], row["auprc"], row["fpr_calibration"], row["fpr_monte_carlo"],
                         row["nominal_fpr"], row["test_images_per_second"])

    summary = {
        "benchmark": "mnist_one_class",
        "quick": args.quick,
        "experiments": [summarise(name, [r for r in rows if r["experiment"] == name]) for name in args.experiment],
        "total_train_seconds": float(sum(r["train_seconds"] for r in rows)),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {'cuda' if torch.cuda.is_available() else 'cpu'}",
        "rows": rows,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
