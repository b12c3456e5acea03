"""Encoder warm start for the latent search: ADGAN with restart 0 at z₀ = E(x) against ADGAN with random starts.

For each digit d (MNIST one-class: d normal, the benchmark's change prepare.<data>.normal_classes), one GAN is trained
by the pipeline's train step with the mnist-adgan settings of params.yaml; both variants score the same images with
the same search budget, on that same GAN (the second variant's train step reuses the first's finished GAN):
- cold: the experiment with model.warm_start null: the default S seeded random restarts;
- warm: the experiment with model.warm_start as params.yaml sets it (default when unset: WarmStartConfig()):
  restart 0 starts at E(x), E fitted after training to invert G on G's own samples (‖E(G(z)) − z‖², no real
  data); the other restarts unchanged.
The two variants are the benchmark's own design and are recorded in the JSON. Reported per variant: test AUROC on
a seeded subset of the test set (the same images for both), the label-free search check (final loss on 300 of G's
own samples relative to the normal calibration split) and scoring speed. Nothing here chooses a setting of the
defaults. One JSON object is the last line.

    python benchmarks/warm_start.py                    # digits 2, 5, 8 (ADGAN's weakest in docs/benchmarks.md)
    python benchmarks/warm_start.py --quick            # the smoke overlay's tiny settings, digit 0, 500 test images
    python benchmarks/warm_start.py --set experiments.mnist-adgan.model.warm_start.steps=500
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

import common

log = common.log


def variants(loaded: common.Settings, experiment: str, digit: int) -> tuple[dict, dict[str, str]]:
    """The design's changes for one digit, and the experiment name of each variant (cold, warm)."""
    entry = loaded.raw["experiments"][experiment]
    warm = json.loads(json.dumps(entry))
    warm["model"]["warm_start"] = entry["model"].get("warm_start") or {}  # params.yaml's, else the default encoder
    names = {"cold": experiment, "warm": f"{experiment}-warm"}
    changes = {f"prepare.{entry['data']}.normal_classes": [digit], f"experiments.{experiment}.model.warm_start": None,
               f"experiments.{names['warm']}": warm}
    return changes, names


def run_digit(loaded: common.Settings, experiment: str, digit: int, n_test: int, n_check: int) -> list[dict]:
    from models.registry import load_detector
    from tasks.adapters import load_prepared
    from tasks.layout import ExperimentLayout
    from tasks.steps.train import train

    changes, names = variants(loaded, experiment, digit)
    params = loaded.changed(changes)
    data = load_prepared(common.prepare(params, params.experiments[experiment].data))
    subset = np.sort(np.random.default_rng(digit).choice(len(data.test), size=min(n_test, len(data.test)), replace=False))
    test, labels = np.asarray(data.test[subset]), np.asarray(data.test_labels[subset])
    rows = []
    for variant, name in names.items():
        exp = params.experiment(name)
        layout = ExperimentLayout.of(name, Path(f"outputs/digit{digit}"))  # siblings: the warm variant reuses the cold one's GAN
        start = time.perf_counter()
        train(exp, layout)  # the GAN (reused by the second variant) and, warm, the encoder fitted after it
        fit_seconds = time.perf_counter() - start
        detector = load_detector(layout.model_dir)
        start = time.perf_counter()
        scores = detector.score(test)
        score_seconds = time.perf_counter() - start
        own = detector.search_losses(detector.sample(n_check, seed=7)).mean()
        normal = detector.search_losses(np.asarray(data.calib[:n_check])).mean()
        rows.append({"digit": digit, "warm_start": variant == "warm", "auroc": float(roc_auc_score(labels, scores)), "test_images": len(test),
                     "generated_to_normal_loss_ratio": float(own / normal), "images_per_second": len(test) / score_seconds,
                     "fit_seconds": fit_seconds, "warm_start_config": exp.model.warm_start.to_dict() if exp.model.warm_start else None})
        log.info("digit %d %s: AUROC %.4f  search check %.3f  %.1f images/s", digit, variant, rows[-1]["auroc"],
                 rows[-1]["generated_to_normal_loss_ratio"], rows[-1]["images_per_second"])
    return rows


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--experiment", default="mnist-adgan", help="a latent-search experiment on MNIST images (default mnist-adgan)")
    parser.add_argument("--digits", type=int, nargs="*", default=None, help="normal digits (default 2 5 8; --quick: 0)")
    parser.add_argument("--test-images", type=int, default=None, help="size of the seeded test subset both variants score (default 2000; --quick: 500)")
    args = parser.parse_args()
    loaded = common.settings(args)
    exp = loaded.params.experiment(args.experiment)
    if not hasattr(exp.model, "warm_start"):
        parser.error(f"{args.experiment}: a '{exp.model.kind}' model has no encoder warm start (adgan, anogan)")
    digits = args.digits if args.digits is not None else ([0] if args.quick else [2, 5, 8])
    n_test = args.test_images if args.test_images is not None else (500 if args.quick else 2000)
    n_check = 100 if args.quick else 300
    rows = []
    with common.workspace():
        for digit in digits:
            rows += run_digit(loaded, args.experiment, digit, n_test, n_check)
    summary = {variant: {"mean_auroc": float(np.mean([r["auroc"] for r in rows if r["warm_start"] == warm])),
                         "mean_generated_to_normal_loss_ratio": float(np.mean([r["generated_to_normal_loss_ratio"] for r in rows if r["warm_start"] == warm]))}
               for variant, warm in (("cold", False), ("warm", True))}
    design, _ = variants(loaded, args.experiment, digits[0])
    common.emit("warm_start", loaded, {
        "experiment": args.experiment, "digits": digits, "test_images": n_test, "search_check_samples": n_check,
        "design": {"variants": {"cold": {"model.warm_start": None}, "warm": {"model.warm_start": design[f"experiments.{args.experiment}-warm"]["model"]["warm_start"]}},
                   "per_digit": "prepare.<data>.normal_classes = [digit]"},
        "search": exp.model.search.to_dict(), "summary": summary, "rows": rows,
    })


if __name__ == "__main__":
    main()
