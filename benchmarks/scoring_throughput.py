"""Scoring throughput: encoder models (EGBAD, GANomaly) against latent-search models (ADGAN, AnoGAN), same run.

The EGBAD paper's point: an encoder learnt during training makes scoring one forward pass, where AnoGAN
needs an optimisation per sample. Each model of params.yaml (default network sizes and search budgets)
is trained for one epoch on MNIST digit 0 (speed does not depend on how well it is trained), then scores
MNIST test images on this machine, one model after the other in one process.
One JSON object is the last line.

    python benchmarks/scoring_throughput.py
    python benchmarks/scoring_throughput.py --quick     # fewer images, < 1 minute
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

from models import get_detector  # noqa: E402
from tasks.config import load_params  # noqa: E402
from tasks.download import download_dataset  # noqa: E402
from tasks.prepare import load_prepared, prepare_dataset  # noqa: E402

log = logging.getLogger("benchmark")
EXPERIMENTS = ["mnist-egbad", "mnist-ganomaly", "mnist-adgan", "mnist-anogan"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--encoder-images", type=int, default=10_000, help="test images scored by the encoder models")
    parser.add_argument("--search-images", type=int, default=500, help="test images scored by the latent-search models")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.encoder_images, args.search_images = 2000, 50
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    os.environ.setdefault("GADFLOW_DATA_MIRROR", str(REPO.parent / "shared" / "datasets"))
    params = load_params(args.params)
    rows = []
    with tempfile.TemporaryDirectory(prefix="gadflow-throughput-") as tmp:
        work = Path(tmp)
        prep = params.prepare["mnist"].model_copy(update={"normal_classes": [0]})
        raw = download_dataset.fn(prep.source, params.download[prep.source], work / "raw")
        data = load_prepared(prepare_dataset.fn("mnist", prep, params.download[prep.source], raw, work / "prepared"))
        for name in EXPERIMENTS:
            train = params.experiment(name).train.model_copy(update={"epochs": 1})
            cls = get_detector(train.model)
            detector = cls(cls.config_for(data.input_shape, **train.detector_fields()))
            detector.fit(np.asarray(data.train), progress=False)
            n = args.search_images if hasattr(detector, "search_losses") else args.encoder_images
            images = np.asarray(data.test[:n])
            detector.score(images[:8])  # warm-up (allocations, oneDNN kernels)
            start = time.perf_counter()
            detector.score(images, batch_size=512)
            seconds = time.perf_counter() - start
            rows.append({"experiment": name, "model": train.model, "images": n, "seconds": seconds, "images_per_second": n / seconds,
                         "search": train.search.model_dump() if train.search else None})
            log.info("%s: %d test images in %.2f s = %.1f images/s", name, n, seconds, n / seconds)
    by_name = {r["experiment"]: r["images_per_second"] for r in rows}
    print(json.dumps({
        "benchmark": "scoring_throughput",
        "quick": args.quick,
        "rows": rows,
        "speedup_vs_anogan": {name: by_name[name] / by_name["mnist-anogan"] for name in by_name},
        "speedup_vs_adgan": {name: by_name[name] / by_name["mnist-adgan"] for name in by_name},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), {'cuda' if torch.cuda.is_available() else 'cpu'}",
    }))


if __name__ == "__main__":
    main()
