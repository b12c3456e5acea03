"""One MAD-GAN experiment on a prepared time series, through the pipeline's own tasks (no registry).

Downloads (or copies from $GADFLOW_DATA_MIRROR) and prepares the dataset with its `params.yaml` prepare
section, then trains MAD-GAN, calibrates, scores and evaluates, timing each step. Prints the named series
metrics (point-wise, SKAB's aggregation with FAR and MAR, point-adjusted beside random scores, event
recall, AUROC, AUPRC, attribution hit@k where labels exist). One JSON object is the last line.

With --per-series, one model is trained per series (an SMD machine, a SKAB experiment file) instead of one
global model; each has its own scaling, fitted on its own training rows. The pooled figures use each
series' own threshold: a point's pooled score is its score minus its series' threshold, so "flagged" means
the same as in the per-series runs, and counts sum over series.

    python benchmarks/series_experiment.py skab --epochs 30 [--per-series] [--stride 1]
    python benchmarks/series_experiment.py smd --all-machines --epochs 5 --steps 10 --nominal-fpr 0.01 [--per-series]
    python benchmarks/series_experiment.py kdd99-seq --epochs 5
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

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from models.threshold import THRESHOLD_FILE, Calibration  # noqa: E402
from tasks.calibrate import calibrate_model  # noqa: E402
from tasks.config import CalibrateParams, EvaluateParams, PrepareParams, TrainParams, load_params  # noqa: E402
from tasks.download import download_dataset  # noqa: E402
from tasks.evaluate import evaluate_scores  # noqa: E402
from tasks.prepare import prepare_dataset  # noqa: E402
from tasks.score import POINTS_FILE, score_test_set  # noqa: E402
from tasks.series_evaluate import series_metrics  # noqa: E402
from tasks.series_metrics import skab_aggregate  # noqa: E402
from tasks.train import train_model  # noqa: E402

log = logging.getLogger("benchmark")


def run_experiment(name: str, prepare: PrepareParams, spec, raw: Path, train: TrainParams, calibrate: CalibrateParams, work: Path) -> dict:
    """prepare -> train -> calibrate -> score -> evaluate; -> metrics.json, the points frame, seconds per step."""
    seconds = {}
    start = time.perf_counter()
    data_dir = prepare_dataset.fn(name, prepare, spec, raw, work / "prepared" / name)
    seconds["prepare"] = time.perf_counter() - start
    out = work / "outputs" / f"{name}-madgan"
    for step, run in (
        ("train", lambda: train_model.fn(f"{name}-madgan", train, data_dir, out)),
        ("calibrate", lambda: calibrate_model.fn(calibrate, out / "model", data_dir, out)),
        ("score", lambda: score_test_set.fn(out / "model", data_dir, out)),
        ("evaluate", lambda: evaluate_scores.fn(f"{name}-madgan", EvaluateParams(), out / "scores.parquet", out / "model", data_dir, out)),
    ):
        start = time.perf_counter()
        run()
        seconds[step] = time.perf_counter() - start
    points = pd.read_parquet(out / POINTS_FILE)
    threshold = Calibration.load(out / "model" / THRESHOLD_FILE).threshold
    return {"metrics": json.loads((out / "report" / "metrics.json").read_text()), "points": points, "threshold": threshold, "seconds": seconds}


def pooled_attribution(per_series: list[dict | None]) -> dict | None:
    """Range-weighted mean of each series' hit@k (and of the random-ranking figure)."""
    parts = [a for a in per_series if a]
    if not parts:
        return None
    ranges = sum(a["ranges"] for a in parts)
    keys = [k for k in parts[0] if k.startswith("hit@")]
    return {"ranges": ranges, **{k: sum(a[k] * a["ranges"] for a in parts) / ranges for k in keys}, "definition": parts[0]["definition"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="a `prepare` entry of params.yaml that makes windows: skab, smd, kdd99-seq, mnistseq")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--nominal-fpr", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=20, help="latent-search steps per restart")
    parser.add_argument("--n-seeds", type=int, default=3, help="latent-search restarts per window")
    parser.add_argument("--dr-lambda", type=float, default=0.5)
    parser.add_argument("--per-series", action="store_true", help="one model per series (smd: machine, skab: experiment file) instead of one global model")
    parser.add_argument("--stride", type=int, help="window stride (default: the prepare section's)")
    parser.add_argument("--all-machines", action="store_true", help="smd: every declared machine, whatever prepare.smd.series.machines says")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s | %(levelname)s | %(name)s - %(message)s")
    params = load_params(REPO / "params.yaml")
    name = args.dataset
    prepare = params.prepare[name]
    spec = params.download[prepare.source]
    if args.all_machines:  # the default run uses a few machines (CPU-sized); the benchmark protocol uses all
        prepare = prepare.model_copy(update={"series": prepare.series.model_copy(update={"machines": None})})
    if args.stride is not None:
        prepare = prepare.model_copy(update={"series": prepare.series.model_copy(update={"stride": args.stride})})
    train = TrainParams(data=name, model="madgan", epochs=args.epochs, batch_size=64, latent_dim=15, lr_g=2e-4, lr_d=2e-4,
                        search={"lr_theta": 0.0, "n_seeds": args.n_seeds, "steps": args.steps, "lr_z": 0.05},
                        madgan={"hidden_dim": 100, "dr_lambda": args.dr_lambda})
    calibrate = CalibrateParams(mc_samples=200, nominal_fpr=args.nominal_fpr)
    with tempfile.TemporaryDirectory(prefix="gadflow-series-") as tmp:
        work = Path(tmp)
        raw = download_dataset.fn(prepare.source, spec, work / "raw" / prepare.source)
        if not args.per_series:
            runs = {name: run_experiment(name, prepare, spec, raw, train, calibrate, work)}
        elif spec.format == "smd":
            settings = prepare.series
            runs = {}
            for machine in settings.machines or spec.smd_machines():
                one = prepare.model_copy(update={"series": settings.model_copy(update={"machines": [machine]})})
                runs[machine] = run_experiment(f"{name}-{machine}", one, spec, raw, train, calibrate, work)
                log.warning("%s: AUPRC %.3f", machine, runs[machine]["metrics"]["auprc"])
        elif spec.format == "skab":  # SKAB's leaderboard protocol: one model per experiment file, on its first rows
            runs = {}
            for role, f in spec.files.items():
                if f.file.startswith("anomaly-free/"):
                    continue
                one_file = spec.model_copy(update={"files": {role: f}})
                series_name = f.file.removesuffix(".csv")
                runs[series_name] = run_experiment(f"{name}-{role}", prepare, one_file, raw, train, calibrate, work)
        else:
            parser.error("--per-series is for smd and skab datasets")
    if not args.per_series:
        metrics = runs[name]["metrics"]
        series = metrics["series"]
        result = {"mode": "one global model", "threshold_method": metrics["threshold_method"], "auroc": metrics["auroc"], "auprc": metrics["auprc"],
                  "overall": series["overall"], "aggregated_over_series": series["aggregated_over_series"],
                  "mean_over_series": series["mean_over_series"], "per_series": series["per_series"],
                  "attribution": series.get("attribution"), "seconds": runs[name]["seconds"]}
    else:  # pooled over series, each flagged by its own threshold: pooled score = score − the series' threshold
        pooled = pd.concat([r["points"].assign(score=r["points"]["score"] - r["threshold"]) for r in runs.values()], ignore_index=True)
        series = series_metrics(pooled, 0.0)
        per_series = {m: r["metrics"]["series"]["per_series"][m] for m, r in runs.items()}
        counts = [{k: s[f"pointwise_{k}"] for k in ("tp", "fp", "fn", "tn")} for s in per_series.values()]
        result = {"mode": "one model per series", "threshold_method": next(iter(runs.values()))["metrics"]["threshold_method"],
                  "auroc": series["overall"]["auroc"], "auprc": series["overall"]["auprc"], "overall": series["overall"],
                  "aggregated_over_series": skab_aggregate(counts), "mean_over_series": series["mean_over_series"],
                  "per_series": per_series,
                  "attribution": pooled_attribution([r["metrics"]["series"].get("attribution") for r in runs.values()]),
                  "seconds": {step: sum(r["seconds"][step] for r in runs.values()) for step in next(iter(runs.values()))["seconds"]}}
    result = {"benchmark": "series_experiment", "dataset": name, "epochs": args.epochs, "nominal_fpr": args.nominal_fpr,
              "search_steps": args.steps, "n_seeds": args.n_seeds, "dr_lambda": args.dr_lambda, "stride": prepare.series.stride, **result,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    agg, overall, mean = result["aggregated_over_series"], result["overall"], result["mean_over_series"]
    log.warning("%s (%s): point-wise F1 %.3f (FAR %.1f%%, MAR %.1f%%), AUROC %.3f, AUPRC %.3f (mean over series: F1 %.3f, AUPRC %.3f), "
                "point-adjusted F1 %.3f vs %.3f for random scores, event recall %.3f", name, result["mode"], agg["f1"], 100 * agg["far"],
                100 * agg["mar"], result["auroc"], result["auprc"], mean["pointwise_f1"], mean["auprc"], overall["point_adjusted_f1"],
                overall["point_adjusted_f1_random_scores"], overall["event_recall"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
