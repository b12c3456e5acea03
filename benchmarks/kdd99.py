"""KDD Cup 99 benchmark for the encoder GANs (EGBAD, GANomaly): the paper protocol and ours, over seeds.

Paper protocol (EGBAD / ALAD / DAGMM): `normal.` traffic is the anomaly class, a seeded 50/50 split of the
10% file, training on the other class of the train half, and the top 20 % of test scores flagged (a
threshold taken from the test scores, so for comparison with published numbers only). Our protocol: the
threshold is the conformal quantile of a normal (inlier) calibration split at the nominal FPR; no test
statistic is used. The pipeline's own task functions do the work, with the experiment settings of
params.yaml; only the training seed changes between runs (the split stays `prepare.kdd99.seed`).
Prints one line per run, then one JSON object as the last line.

    python benchmarks/kdd99.py                       # both models, seeds 0-4
    python benchmarks/kdd99.py --quick               # one seed, one epoch (< 2 minutes)
    python benchmarks/kdd99.py --experiment kdd99-ganomaly --seeds 0 1
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
PUBLISHED_F1 = {"ALAD": 0.9501, "DAGMM": 0.9369, "EGBAD": 0.9372, "AnoGAN": 0.85, "OC-SVM": 0.7954}


def run_once(params, exp_name: str, seed: int, data_dir: Path, work: Path, quick: bool) -> dict:
    exp = params.experiment(exp_name)
    train = exp.train.model_copy(update={"seed": seed, **({"epochs": 1} if quick else {})})
    evaluate = exp.evaluate.model_copy(update={"paper_top_fraction": exp.evaluate.paper_top_fraction or 0.2})
    out = work / "outputs" / f"{exp_name}-seed{seed}"
    start = time.perf_counter()
    model_dir = train_model.fn(exp_name, train, data_dir, out)
    train_seconds = time.perf_counter() - start
    calibrate_model.fn(exp.calibrate, model_dir, data_dir, out)
    start = time.perf_counter()
    scores = score_test_set.fn(model_dir, data_dir, out, exp.evaluate.score_batch_size)
    score_seconds = time.perf_counter() - start
    metrics = json.loads((evaluate_scores.fn(exp_name, evaluate, scores, model_dir, data_dir, out) / "metrics.json").read_text())
    paper = metrics["paper_protocol"]
    return {
        "experiment": exp_name, "seed": seed,
        "paper_precision": paper["precision"], "paper_recall": paper["recall"], "paper_f1": paper["f1"],
        "ours_precision": metrics["precision"], "ours_recall": metrics["recall"], "ours_f1": metrics["f1"],
        "ours_nominal_fpr": metrics["nominal_fpr"], "ours_achieved_fpr": metrics["achieved_fpr"],
        "auroc": metrics["auroc"], "auprc": metrics["auprc"],
        "train_seconds": train_seconds, "test_rows_per_second": metrics["counts"]["test"] / score_seconds,
    }


def summarise(rows: list[dict]) -> dict:
    out = {"experiment": rows[0]["experiment"], "seeds": [r["seed"] for r in rows]}
    for key in ("paper_precision", "paper_recall", "paper_f1", "ours_f1", "ours_achieved_fpr", "auroc", "auprc", "train_seconds", "test_rows_per_second"):
        values = np.array([r[key] for r in rows])
        out[key] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--experiment", nargs="+", default=["kdd99-egbad", "kdd99-ganomaly"])
    parser.add_argument("--seeds", type=int, nargs="*", default=None)
    parser.add_argument("--quick", action="store_true", help="one seed, one epoch")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    os.environ.setdefault("GADFLOW_DATA_MIRROR", str(REPO.parent / "shared" / "datasets"))
    params = load_params(args.params)
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2, 3, 4])
    data_name = params.experiment(args.experiment[0]).train.data
    prep = params.prepare[data_name]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="gadflow-kdd99-") as tmp:
        work = Path(tmp)
        raw = download_dataset.fn(prep.source, params.download[prep.source], work / "raw" / prep.source)
        data_dir = prepare_dataset.fn(data_name, prep, params.download[prep.source], raw, work / "prepared" / data_name)
        for exp_name in args.experiment:
            for seed in seeds:
                row = run_once(params, exp_name, seed, data_dir, work, args.quick)
                rows.append(row)
                log.info("%s seed %d: paper P %.4f R %.4f F1 %.4f | ours F1 %.4f at FPR %.4f (nominal %.2f) | AUROC %.4f | train %.0fs",
                         exp_name, seed, row["paper_precision"], row["paper_recall"], row["paper_f1"], row["ours_f1"],
                         row["ours_achieved_fpr"], row["ours_nominal_fpr"], row["auroc"], row["train_seconds"])
    print(json.dumps({
        "benchmark": "kdd99",
        "quick": args.quick,
        "protocol": {"paper": "normal. = anomaly class, seeded 50/50 split, train on the train half's other class, top 20% of test scores flagged",
                     "ours": "the same split and model; threshold = conformal quantile of a 10% inlier calibration split at nominal FPR"},
        "published_f1": PUBLISHED_F1,
        "experiments": [summarise([r for r in rows if r["experiment"] == name]) for name in args.experiment],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {'cuda' if torch.cuda.is_available() else 'cpu'}",
        "rows": rows,
    }))


if __name__ == "__main__":
    main()
