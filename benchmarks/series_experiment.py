"""One MAD-GAN experiment on a prepared time-series dataset, through the pipeline's own tasks (no registry).

Downloads (or copies from $GADFLOW_DATA_MIRROR) and prepares the dataset with its `params.yaml` sections,
then trains MAD-GAN, calibrates, scores and evaluates, timing each step. Prints the named series metrics
(point-wise, SKAB aggregation with FAR and MAR, point-adjusted beside random scores, event recall, AUROC,
AUPRC, attribution hit@k where labels exist). One JSON object is the last line.

    python benchmarks/series_experiment.py skab --epochs 30
    python benchmarks/series_experiment.py smd --epochs 5 --nominal-fpr 0.01
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tasks.calibrate import calibrate_model  # noqa: E402
from tasks.config import CalibrateParams, EvaluateParams, TrainParams, load_params  # noqa: E402
from tasks.download import download_dataset  # noqa: E402
from tasks.evaluate import evaluate_scores  # noqa: E402
from tasks.prepare import prepare_dataset  # noqa: E402
from tasks.score import score_test_set  # noqa: E402
from tasks.train import train_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=["skab", "smd"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--nominal-fpr", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=20, help="latent-search steps per restart")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s | %(levelname)s | %(name)s - %(message)s")
    params = load_params(REPO / "params.yaml")
    name = args.dataset
    train = TrainParams(data=name, model="madgan", epochs=args.epochs, batch_size=64, latent_dim=15, lr_g=2e-4, lr_d=2e-4,
                        search={"lr_theta": 0.0, "n_seeds": 3, "steps": args.steps, "lr_z": 0.05}, madgan={"hidden_dim": 100})
    seconds = {}
    with tempfile.TemporaryDirectory(prefix="gadflow-series-") as tmp:
        work = Path(tmp)
        raw = download_dataset.fn(name, params.download[name], work / "raw" / name)
        start = time.perf_counter()
        data_dir = prepare_dataset.fn(name, params.prepare[name], params.download[name], raw, work / "prepared" / name)
        seconds["prepare"] = time.perf_counter() - start
        out = work / "outputs" / f"{name}-madgan"
        for step, run in (
            ("train", lambda: train_model.fn(f"{name}-madgan", train, data_dir, out)),
            ("calibrate", lambda: calibrate_model.fn(CalibrateParams(mc_samples=1000, nominal_fpr=args.nominal_fpr), out / "model", data_dir, out)),
            ("score", lambda: score_test_set.fn(out / "model", data_dir, out)),
            ("evaluate", lambda: evaluate_scores.fn(f"{name}-madgan", EvaluateParams(), out / "scores.parquet", out / "model", data_dir, out)),
        ):
            start = time.perf_counter()
            run()
            seconds[step] = time.perf_counter() - start
        metrics = json.loads((out / "report" / "metrics.json").read_text())
    series = metrics["series"]
    result = {
        "benchmark": "series_experiment", "dataset": name, "epochs": args.epochs, "nominal_fpr": args.nominal_fpr, "search_steps": args.steps,
        "seconds": seconds, "threshold_method": metrics["threshold_method"], "auroc": metrics["auroc"], "auprc": metrics["auprc"],
        "overall": series["overall"], "aggregated_over_series": series["aggregated_over_series"],
        "mean_over_series": series["mean_over_series"], "attribution": series.get("attribution"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    agg, overall = series["aggregated_over_series"], series["overall"]
    logging.getLogger("benchmark").warning(
        "%s: F1 %.3f (FAR %.1f%%, MAR %.1f%%), AUROC %.3f, AUPRC %.3f, point-adjusted F1 %.3f vs %.3f for random scores, event recall %.3f",
        name, agg["f1"], 100 * agg["far"], 100 * agg["mar"], metrics["auroc"], metrics["auprc"], overall["point_adjusted_f1"],
        overall["point_adjusted_f1_random_scores"], overall["event_recall"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
