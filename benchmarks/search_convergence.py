"""Label-free choice of the latent-search budget: how well does the search reconstruct G's own samples?

A sample x = G(z*) is reachable by construction, so the loss the search leaves on it measures the
search alone (not the GAN, not the data). If that loss is close to the loss on real normal frames, the
scores mostly measure an unfinished search, not distance from the normal manifold. This uses no test
data and no labels, so it may pick the `search` settings of an experiment. It picked RGB-D's. On MNIST a more finished
search ranked the other digits worse, so it did not pick mnist-adgan's (benchmarks/search_budget.py draws both).

The model is a saved adgan/anogan model folder (by default outputs/<--experiment>/model, what the pipeline
trained with params.yaml's settings); its own search settings apply but for the grid's steps and lr_z, the
benchmark's own design. --quick scores with an untrained model of the experiment, built with the smoke
overlay's settings on its prepared data (G's own samples need no training), over a two-point grid.

    python benchmarks/search_convergence.py outputs/rgbd-adgan/model
    python benchmarks/search_convergence.py --experiment mnist-adgan --grid 19:0.05 50:0.1 --samples 100
    python benchmarks/search_convergence.py --quick      # an untrained mnist-adgan (smoke settings), < 1 minute

One JSON object is the last line.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

import common

log = common.log
DEFAULT_GRID = ["19:0.05", "19:0.1", "19:0.2", "50:0.05", "50:0.1", "50:0.2", "100:0.1"]


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("model", type=Path, nargs="?", help="a saved adgan/anogan model folder (default: outputs/<experiment>/model)")
    parser.add_argument("--experiment", default="mnist-adgan", help="the latent-search experiment whose model is checked (default mnist-adgan)")
    parser.add_argument("--grid", nargs="+", default=None, help="steps:lr_z pairs (default: seven from 19:0.05 to 100:0.1; --quick: 5:0.05 20:0.1)")
    parser.add_argument("--samples", type=int, default=None, help="G's own samples searched (default 200; --quick: 20)")
    parser.add_argument("--seed", type=int, default=123, help="seed of the generated samples")
    args = parser.parse_args()
    loaded = common.settings(args)
    from models.registry import get_detector, load_detector
    from tasks.adapters import load_prepared

    grid = args.grid or (["5:0.05", "20:0.1"] if args.quick else DEFAULT_GRID)
    n = args.samples or (20 if args.quick else 200)
    if args.quick:
        if args.model is not None:
            parser.error("--quick builds an untrained model of --experiment; give a model folder or --quick, not both")
        exp = loaded.params.experiment(args.experiment)
        with common.workspace():
            data = load_prepared(common.prepare(loaded.params, exp.data))
            detector = get_detector(exp.model.kind)(exp.model, data.input_spec)
        source = f"untrained {args.experiment} (these settings)"
    else:
        if args.overlay or loaded.record["set"]:
            parser.error("a saved model carries its own settings: --overlay and --set apply to --quick's untrained model only")
        folder = args.model or common.REPO / "outputs" / args.experiment / "model"
        if not (folder / "model.pt").is_file():
            parser.error(f"{folder}: no model.pt; train it first (gadflow train {args.experiment}), give a model folder, or use --quick")
        detector, source = load_detector(folder), str(folder)
    if not detector.capabilities.search_loss_score:
        parser.error(f"a '{detector.kind}' model does not score by latent search")
    samples = detector.sample(n, seed=args.seed)  # uint8 (n, C, H, W), reachable by construction
    base = detector.config
    rows = []
    for item in grid:
        steps, lr_z = item.split(":")
        detector.config = base.replace(search=base.search.replace(steps=int(steps), lr_z=float(lr_z)))
        start = time.perf_counter()
        losses = detector.score(samples)
        seconds = time.perf_counter() - start
        rows.append({"steps": int(steps), "lr_z": float(lr_z), "mean_loss": float(losses.mean()), "median_loss": float(np.median(losses)),
                     "samples_per_s": n / seconds})
        log.info("k = %3d  lr_z = %-5g  loss on G's own samples: mean %.3g, median %.3g   %.1f samples/s",
                 rows[-1]["steps"], rows[-1]["lr_z"], rows[-1]["mean_loss"], rows[-1]["median_loss"], rows[-1]["samples_per_s"])
    common.emit("search_convergence", loaded, {
        "model": source,
        "kind": detector.kind,
        "n_seeds": base.search.n_seeds,
        "search": base.search.to_dict(),
        "samples": n,
        "sample_seed": args.seed,
        "rows": rows,
        "threads": torch.get_num_threads(),
    })


if __name__ == "__main__":
    main()
