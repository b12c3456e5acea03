"""One MAD-GAN experiment on a prepared time series, through the pipeline's own steps (no registry).

Downloads (or copies from $GADFLOW_DATA_MIRROR) the experiment's dataset and prepares it with its params.yaml
prepare section, then runs the experiment with its params.yaml settings (run_experiment: train, calibrate, score,
report), timing each step. Prints the named series metrics (point-wise, SKAB's aggregation with FAR and MAR,
point-adjusted beside random scores, event recall, AUROC, AUPRC, attribution hit@k where labels exist). Any other
setting (epochs, search steps and restarts, dr_lambda, nominal FPR, window stride, SMD machines) is a --set (or an
--overlay) and is recorded in the JSON. One JSON object is the last line.

With --per-series (the benchmark's own design, recorded as "mode"), one model is trained per series (an SMD machine,
a SKAB experiment file: prepare.<data>.series.machines / .files set to that one) instead of one global model; each
has its own scaling, fitted on its own training rows. The pooled figures use each series' own threshold: a point's
pooled score is its score minus its series' threshold, so "flagged" means the same as in the per-series runs, and
counts sum over series.

    python benchmarks/series_experiment.py skab-madgan [--per-series] [--set prepare.skab.series.stride=1]
    python benchmarks/series_experiment.py smd-madgan --set prepare.smd.series.machines=null \\
        --set experiments.smd-madgan.model.training.epochs=5 [--per-series]          # every declared SMD machine
    python benchmarks/series_experiment.py kdd99-madgan --set experiments.kdd99-madgan.model.training.epochs=5
    python benchmarks/series_experiment.py skab-madgan --quick --per-series          # the smoke overlay: 3 SKAB files, tiny model
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pandas as pd

import common

log = common.log


def run_series(params, experiment: str, outputs: Path) -> dict:
    """prepare -> run_experiment (train, calibrate, score, report); -> metrics.json, the points frame, the threshold, seconds per step."""
    from models.threshold import Calibration
    from tasks.layout import ExperimentLayout

    seconds: dict[str, float] = {}
    start = time.perf_counter()
    common.prepare(params, params.experiments[experiment].data)
    seconds["prepare"] = time.perf_counter() - start
    metrics = common.run(params, experiment, outputs=outputs, seconds=seconds)
    layout = ExperimentLayout.of(experiment, outputs)
    points = pd.read_parquet(layout.score_tables["points"])
    threshold = Calibration.load(layout.threshold).threshold
    return {"metrics": metrics, "points": points, "threshold": threshold, "seconds": seconds}


def pooled_attribution(per_series: list[dict | None]) -> dict | None:
    """Range-weighted mean of each series' hit@k (and of the random-ranking figure)."""
    parts = [a for a in per_series if a]
    if not parts:
        return None
    ranges = sum(a["ranges"] for a in parts)
    keys = [k for k in parts[0] if k.startswith("hit@")]
    return {"ranges": ranges, **{k: sum(a[k] * a["ranges"] for a in parts) / ranges for k in keys}, "definition": parts[0]["definition"]}


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("experiment", help="an experiment of params.yaml on windowed data: skab-madgan, smd-madgan, kdd99-madgan, mnistseq-madgan")
    parser.add_argument("--per-series", action="store_true", help="one model per series (smd: machine, skab: experiment file) instead of one global model")
    args = parser.parse_args()
    loaded = common.settings(args)
    from tasks.layout import raw_dir
    from tasks.reports.series import series_metrics
    from tasks.reports.series_metrics import skab_aggregate
    from tasks.sources.download import download_dataset

    base = loaded.params
    experiment = args.experiment
    exp = base.experiment(experiment)
    name = exp.data
    if base.data_kind(name) != "series":
        parser.error(f"{experiment}: its data '{name}' is not a windowed time series")
    prepare = base.prepare[name]
    spec = base.source_spec(name)
    with common.workspace():
        download_dataset(prepare.source, spec, raw_dir(prepare.source))  # not timed: a verified copy from the mirror
        if not args.per_series:
            runs = {name: run_series(base, experiment, Path("outputs"))}
        elif spec.format == "smd":
            runs = {}
            for machine in prepare.series.machines or spec.smd_machines():
                one = loaded.changed({f"prepare.{name}.series.machines": [machine]})
                runs[machine] = run_series(one, experiment, Path("outputs") / machine)
                log.warning("%s: AUPRC %.3f", machine, runs[machine]["metrics"]["auprc"])
        elif spec.format == "skab":  # SKAB's leaderboard protocol: one model per experiment file, on its first rows
            runs = {}
            files = prepare.series.files or [f.file for f in spec.files.values() if not f.file.startswith("anomaly-free/")]
            for file in files:
                one = loaded.changed({f"prepare.{name}.series.files": [file]})
                series_name = file.removesuffix(".csv")
                runs[series_name] = run_series(one, experiment, Path("outputs") / re.sub(r"[^A-Za-z0-9._-]", "-", series_name))
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
    model = exp.model
    result = {"experiment": experiment, "dataset": name, "epochs": model.training.epochs, "nominal_fpr": exp.calibrate.nominal_fpr,
              "search_steps": model.search.steps, "n_seeds": model.search.n_seeds, "dr_lambda": model.dr_lambda,
              "seq_len": prepare.series.seq_len, "stride": prepare.series.stride, **result}
    agg, overall, mean = result["aggregated_over_series"], result["overall"], result["mean_over_series"]
    log.warning("%s (%s): point-wise F1 %.3f (FAR %.1f%%, MAR %.1f%%), AUROC %.3f, AUPRC %.3f (mean over series: F1 %.3f, AUPRC %.3f), "
                "point-adjusted F1 %.3f vs %.3f for random scores, event recall %.3f", experiment, result["mode"], agg["f1"], 100 * agg["far"],
                100 * agg["mar"], result["auroc"], result["auprc"], mean["pointwise_f1"], mean["auprc"], overall["point_adjusted_f1"],
                overall["point_adjusted_f1_random_scores"], overall["event_recall"])
    common.emit("series_experiment", loaded, result)


if __name__ == "__main__":
    main()
