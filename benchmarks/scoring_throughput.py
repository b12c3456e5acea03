"""Scoring throughput: encoder models (EGBAD, GANomaly) against latent-search models (ADGAN, AnoGAN), same run.

The EGBAD paper's point: an encoder learnt during training makes scoring one forward pass, where AnoGAN
needs an optimisation per sample. Each MNIST experiment of params.yaml (its network sizes, search budgets and
score batch size) is trained by the pipeline's train step on the MNIST data of params.yaml (normal digit 0) for
one epoch (the benchmark's own change, experiments.<e>.model.training.epochs, recorded in the JSON: speed does not
depend on how well a model is trained; --train-epochs 0 keeps params.yaml's), then the saved model scores MNIST
test images on this machine, one model after the other in one process. ADGAN and AnoGAN train the same GAN: the
second reuses the first's (tasks.steps.train). One JSON object is the last line.

    python benchmarks/scoring_throughput.py
    python benchmarks/scoring_throughput.py --quick     # the smoke overlay's tiny settings, fewer images
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

import common

log = common.log
EXPERIMENTS = ["mnist-egbad", "mnist-ganomaly", "mnist-adgan", "mnist-anogan"]


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--encoder-images", type=int, default=None, help="test images scored by the encoder models (default 10000; --quick: 2000)")
    parser.add_argument("--search-images", type=int, default=None, help="test images scored by the latent-search models (default 500; --quick: 50)")
    parser.add_argument("--train-epochs", type=int, default=1, help="epochs each model is trained for (default 1; 0: params.yaml's)")
    args = parser.parse_args()
    loaded = common.settings(args)
    encoder_images = args.encoder_images if args.encoder_images is not None else (2000 if args.quick else 10_000)
    search_images = args.search_images if args.search_images is not None else (50 if args.quick else 500)
    changes = {f"experiments.{name}.model.training.epochs": args.train_epochs for name in EXPERIMENTS} if args.train_epochs else {}
    params = loaded.changed(changes)
    from models.registry import load_detector
    from tasks.adapters import load_prepared
    from tasks.layout import ExperimentLayout
    from tasks.steps.train import train

    rows = []
    with common.workspace():
        prepared = {name: load_prepared(common.prepare(params, name)) for name in dict.fromkeys(params.experiments[e].data for e in EXPERIMENTS)}
        for name in EXPERIMENTS:
            exp = params.experiment(name)
            data = prepared[exp.data]
            layout = ExperimentLayout.of(name, Path("outputs"))
            train(exp, layout)
            detector = load_detector(layout.model_dir)
            n = search_images if detector.capabilities.search_loss_score else encoder_images
            images = np.asarray(data.test[:n])
            detector.score(images[:8])  # warm-up (allocations, oneDNN kernels)
            start = time.perf_counter()
            detector.score(images, batch_size=exp.score.batch_size)
            seconds = time.perf_counter() - start
            search = getattr(exp.model, "search", None)
            rows.append({"experiment": name, "model": exp.model.kind, "images": n, "seconds": seconds, "images_per_second": n / seconds,
                         "search": search.to_dict() if search is not None else None, "batch_size": exp.score.batch_size,
                         "network": exp.model.network.to_dict(), "normal_classes": params.prepare[exp.data].normal_classes})
            log.info("%s: %d test images in %.2f s = %.1f images/s", name, n, seconds, n / seconds)
    by_name = {r["experiment"]: r["images_per_second"] for r in rows}
    common.emit("scoring_throughput", loaded, {
        "design": {"changes": changes, "encoder_images": encoder_images, "search_images": search_images},
        "rows": rows,
        "speedup_vs_anogan": {name: by_name[name] / by_name["mnist-anogan"] for name in by_name},
        "speedup_vs_adgan": {name: by_name[name] / by_name["mnist-adgan"] for name in by_name},
        "threads": torch.get_num_threads(),
    })


if __name__ == "__main__":
    main()
