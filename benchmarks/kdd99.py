"""KDD Cup 99 benchmark for the encoder GANs (EGBAD, GANomaly): the paper protocol and ours, over seeds.

Paper protocol (EGBAD / ALAD / DAGMM): `normal.` traffic is the anomaly class, a seeded 50/50 split of the
10% file, training on the other class of the train half, and the top 20 % of test scores flagged (a
threshold taken from the test scores, so for comparison with published numbers only: the experiments'
report.paper_top_fraction). Our protocol: the threshold is the conformal quantile of a normal (inlier)
calibration split at the nominal FPR; no test statistic is used. The pipeline's own steps do the work
(prepare, then run_experiment: train, calibrate, score, report; nothing is registered), with the experiments'
settings of params.yaml; only the training seed changes between runs (the benchmark's own change,
experiments.<e>.model.training.seed, recorded per row; the split stays prepare.kdd99.seed).
Prints one line per run, then one JSON object as the last line.

    python benchmarks/kdd99.py                       # both models, seeds 0-4, beside kdd99-knn and kdd99-pca (run once)
    python benchmarks/kdd99.py --quick               # the smoke overlay's tiny settings (one epoch), seed 0 only
    python benchmarks/kdd99.py --experiment kdd99-ganomaly --seeds 0 1
    python benchmarks/kdd99.py --set prepare.kdd99.kdd99.test_file=corrected     # test on the labelled corrected file
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import common

log = common.log
PUBLISHED_F1 = {"ALAD": 0.9501, "DAGMM": 0.9369, "EGBAD": 0.9372, "AnoGAN": 0.85, "OC-SVM": 0.7954}


REFERENCES = Path("outputs/references")  # the reference detectors' one run (they have no training seed)


def run_once(loaded: common.Settings, experiment: str, seed: int | None) -> dict:
    """One run; ``seed`` None: a reference detector, fitted once (deterministic, no training seed)."""
    if seed is None:
        params, outputs = loaded.params, REFERENCES
    else:
        params, outputs = loaded.changed({f"experiments.{experiment}.model.training.seed": seed}), Path(f"outputs/seed{seed}")
        outputs.mkdir(parents=True, exist_ok=True)
        for ref in params.references_of(experiment):  # the GAN's report reads its references beside it
            link = outputs / ref
            if not link.exists() and (REFERENCES / ref).is_dir():
                link.symlink_to((REFERENCES / ref).resolve(), target_is_directory=True)
    seconds: dict[str, float] = {}
    metrics = common.run(params, experiment, outputs=outputs, seconds=seconds)
    paper = metrics["paper_protocol"]
    return {
        "experiment": experiment, "seed": seed,
        "paper_precision": paper["precision"], "paper_recall": paper["recall"], "paper_f1": paper["f1"],
        "ours_precision": metrics["precision"], "ours_recall": metrics["recall"], "ours_f1": metrics["f1"],
        "ours_nominal_fpr": metrics["nominal_fpr"], "ours_achieved_fpr": metrics["achieved_fpr"],
        "auroc": metrics["auroc"], "auprc": metrics["auprc"],
        "reference": common.reference_figures(metrics, ("auroc", "auroc_gap", "auprc", "auprc_gap")),
        "selection": common.selected_epoch(metrics),  # the epoch kept, and the label-free (or validation) signal that chose it
        # the score step: the test rows and the held-out validation anomalies (the promotion gate's), as the pipeline scores them
        "train_seconds": seconds["train"], "test_rows_per_second": metrics["counts"]["test"] / seconds["score"],
    }


SUMMARISED = ("paper_precision", "paper_recall", "paper_f1", "ours_f1", "ours_achieved_fpr", "auroc", "auprc", "train_seconds", "test_rows_per_second")


def summarise(rows: list[dict], reference_rows: dict[str, dict]) -> dict:
    """Mean and std over seeds; for a GAN, each reference's figures on the same split and the gaps to them."""
    out = {"experiment": rows[0]["experiment"], "seeds": [r["seed"] for r in rows]}
    for key in SUMMARISED:
        values = np.array([r[key] for r in rows])
        out[key] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    out["paper_f1_min"] = float(min(r["paper_f1"] for r in rows))
    out["reference"] = {ref: {"auroc": ref_row["auroc"], "paper_f1": ref_row["paper_f1"], "ours_f1": ref_row["ours_f1"],
                              "mean_auroc_gap": out["auroc"]["mean"] - ref_row["auroc"], "mean_paper_f1_gap": out["paper_f1"]["mean"] - ref_row["paper_f1"]}
                        for ref, ref_row in reference_rows.items() if ref in rows[0]["reference"]}
    return out


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--experiment", nargs="+", default=["kdd99-egbad", "kdd99-ganomaly"],
                        help="experiments on the kdd99 tabular data; their reference detectors (kdd99-knn, kdd99-pca) always run, once, first")
    parser.add_argument("--seeds", type=int, nargs="*", default=None, help="training seeds (default: 0-4; --quick: 0)")
    args = parser.parse_args()
    loaded = common.settings(args)
    base = loaded.params
    for experiment in args.experiment:
        exp = base.experiment(experiment)
        if base.data_kind(exp.data) != "tabular":
            parser.error(f"{experiment}: its data '{exp.data}' is not tabular (kdd99 feature rows)")
        if exp.report.paper_top_fraction is None:
            parser.error(f"{experiment}: no report.paper_top_fraction, so no paper protocol to report; "
                         f"add --set experiments.{experiment}.report.paper_top_fraction=0.2")
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2, 3, 4])
    rows: list[dict] = []
    with common.workspace():
        for name in dict.fromkeys(base.experiments[e].data for e in args.experiment):
            common.prepare(base, name)  # the seeds change training only: one split for every run
        experiments = common.with_references(base, args.experiment)  # the references first, once each
        runs = [(e, None) for e in experiments if base.is_reference(e)] + [(e, seed) for e in experiments if not base.is_reference(e) for seed in seeds]
        for experiment, seed in runs:
            row = run_once(loaded, experiment, seed)
            rows.append(row)
            log.info("%s seed %s: paper P %.4f R %.4f F1 %.4f | ours F1 %.4f at FPR %.4f (nominal %.2f) | AUROC %.4f | train %.0fs | %s",
                     experiment, "-" if seed is None else seed, row["paper_precision"], row["paper_recall"], row["paper_f1"], row["ours_f1"],
                     row["ours_achieved_fpr"], row["ours_nominal_fpr"], row["auroc"], row["train_seconds"], common.gaps_text(row["reference"]))
    reference_rows = {r["experiment"]: r for r in rows if r["seed"] is None}
    common.emit("kdd99", loaded, {
        "seeds": seeds,
        "protocol": {"paper": "normal. = anomaly class, seeded 50/50 split, train on the train half's other class, top 20% of test scores flagged",
                     "ours": "the same split and model; threshold = conformal quantile of a 10% inlier calibration split at nominal FPR"},
        "published_f1": PUBLISHED_F1,
        "experiments": [summarise([r for r in rows if r["experiment"] == name], reference_rows) for name in experiments],
        "rows": rows,
    })


if __name__ == "__main__":
    main()
