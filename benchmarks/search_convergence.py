"""Label-free choice of the latent-search budget: how well does the search reconstruct G's own samples?

A sample x = G(z*) is reachable by construction, so the loss the search leaves on it measures the
search alone (not the GAN, not the data). If that loss is close to the loss on real normal frames, the
scores mostly measure an unfinished search, not distance from the normal manifold. This uses no test
data and no labels, so it may pick the `search` settings of an experiment.

    python benchmarks/search_convergence.py outputs/rgbd-adgan/model
    python benchmarks/search_convergence.py outputs/mnist-adgan/model --grid 19:0.05 50:0.1 --samples 100
    python benchmarks/search_convergence.py --quick      # a tiny untrained model, < 1 minute

One JSON object is the last line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from models import load_detector  # noqa: E402
from models.latent_detectors import ADGANDetector, LatentSearchDetectorConfig  # noqa: E402

log = logging.getLogger("benchmark")
DEFAULT_GRID = ["19:0.05", "19:0.1", "19:0.2", "50:0.05", "50:0.1", "50:0.2", "100:0.1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, nargs="?", help="a saved adgan/anogan model folder")
    parser.add_argument("--grid", nargs="+", default=DEFAULT_GRID, help="steps:lr_z pairs")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=123, help="seed of the generated samples")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.quick:
        detector = ADGANDetector(LatentSearchDetectorConfig(channels=1, size=16, latent_dim=8, base_channels=4, device="cpu", lr_theta=0.0))
        grid, n = ["5:0.05", "20:0.1"], 20
    elif args.model is None:
        parser.error("give a model folder, or --quick")
    else:
        detector, grid, n = load_detector(args.model), args.grid, args.samples
    samples = detector.sample(n, seed=args.seed)  # uint8 (n, C, H, W), reachable by construction
    base = detector.config
    rows = []
    for item in grid:
        steps, lr_z = item.split(":")
        detector.config = dataclasses.replace(base, steps=int(steps), lr_z=float(lr_z))
        start = time.perf_counter()
        losses = detector.score(samples)
        seconds = time.perf_counter() - start
        rows.append({"steps": int(steps), "lr_z": float(lr_z), "mean_loss": float(losses.mean()), "median_loss": float(np.median(losses)),
                     "samples_per_s": n / seconds})
        log.info("k = %3d  lr_z = %-5g  loss on G's own samples: mean %.3g, median %.3g   %.1f samples/s",
                 rows[-1]["steps"], rows[-1]["lr_z"], rows[-1]["mean_loss"], rows[-1]["median_loss"], rows[-1]["samples_per_s"])
    print(json.dumps({
        "benchmark": "search_convergence",
        "model": str(args.model) if args.model else "quick (untrained)",
        "kind": detector.kind,
        "n_seeds": base.n_seeds,
        "samples": n,
        "rows": rows,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads",
    }))


if __name__ == "__main__":
    main()
