"""Encoder warm start for the latent search: ADGAN with restart 0 at z₀ = E(x) against ADGAN with random starts.

For each digit d (MNIST one-class: d normal), one GAN is trained with the mnist-adgan settings of
params.yaml; both variants score the same images with the same search budget, on that same GAN:
- cold: the default S seeded random restarts;
- warm: restart 0 starts at E(x), E fitted after training to invert G on G's own samples
  (‖E(G(z)) − z‖², no real data); the other restarts unchanged.
Reported per variant: test AUROC on a seeded subset of the test set (the same images for both), the
label-free search check (final loss on 300 of G's own samples relative to the normal calibration split)
and scoring speed. Nothing here chooses a setting of the defaults. One JSON object is the last line.

    python benchmarks/warm_start.py                    # digits 2, 5, 8 (ADGAN's weakest in docs/benchmarks.md)
    python benchmarks/warm_start.py --quick            # one digit, tiny settings (< 2 minutes)
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
from sklearn.metrics import roc_auc_score

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from models import get_detector  # noqa: E402
from tasks.config import load_params  # noqa: E402
from tasks.download import download_dataset  # noqa: E402
from tasks.prepare import load_prepared, prepare_dataset  # noqa: E402

log = logging.getLogger("benchmark")


def run_digit(digit: int, params, raw: Path, work: Path, n_test: int, quick: bool) -> list[dict]:
    prep = params.prepare["mnist"].model_copy(update={"normal_classes": [digit]})
    data = load_prepared(prepare_dataset.fn(f"mnist{digit}", prep, params.download[prep.source], raw, work / f"prepared{digit}"))
    subset = np.sort(np.random.default_rng(digit).choice(len(data.test), size=min(n_test, len(data.test)), replace=False))
    test, labels = np.asarray(data.test[subset]), np.asarray(data.test_labels[subset])
    train = params.experiment("mnist-adgan").train
    if quick:
        train = train.model_copy(update={"epochs": 1, "base_channels": 8, "search": train.search.model_copy(update={"steps": 3, "n_seeds": 2})})
    rows = []
    checkpoints = work / f"gan{digit}"
    for warm in (False, True):
        fields = {**train.detector_fields(), "encoder_warm_start": warm}
        cls = get_detector("adgan")
        detector = cls(cls.config_for(data.input_shape, **fields))
        start = time.perf_counter()
        detector.fit(np.asarray(data.train), checkpoint_dir=checkpoints, progress=False)  # the second variant reuses the GAN
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        scores = detector.score(test)
        score_seconds = time.perf_counter() - start
        own = detector.search_losses(detector.sample(100 if quick else 300, seed=7)).mean()
        normal = detector.search_losses(np.asarray(data.calib[:100 if quick else 300])).mean()
        rows.append({"digit": digit, "warm_start": warm, "auroc": float(roc_auc_score(labels, scores)), "test_images": len(test),
                     "generated_to_normal_loss_ratio": float(own / normal), "images_per_second": len(test) / score_seconds,
                     "fit_seconds": fit_seconds})
        log.info("digit %d %s: AUROC %.4f  search check %.3f  %.1f images/s", digit, "warm" if warm else "cold", rows[-1]["auroc"],
                 rows[-1]["generated_to_normal_loss_ratio"], rows[-1]["images_per_second"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--digits", type=int, nargs="*", default=None)
    parser.add_argument("--test-images", type=int, default=2000, help="size of the seeded test subset both variants score")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    os.environ.setdefault("GADFLOW_DATA_MIRROR", str(REPO.parent / "shared" / "datasets"))
    params = load_params(args.params)
    digits = args.digits if args.digits is not None else ([0] if args.quick else [2, 5, 8])
    rows = []
    with tempfile.TemporaryDirectory(prefix="gadflow-warm-") as tmp:
        work = Path(tmp)
        raw = download_dataset.fn("mnist", params.download["mnist"], work / "raw")
        for digit in digits:
            rows += run_digit(digit, params, raw, work, 500 if args.quick else args.test_images, args.quick)
    summary = {variant: {"mean_auroc": float(np.mean([r["auroc"] for r in rows if r["warm_start"] == warm])),
                         "mean_generated_to_normal_loss_ratio": float(np.mean([r["generated_to_normal_loss_ratio"] for r in rows if r["warm_start"] == warm]))}
               for variant, warm in (("cold", False), ("warm", True))}
    print(json.dumps({"benchmark": "warm_start", "quick": args.quick, "search": params.experiment("mnist-adgan").train.search.model_dump(),
                      "summary": summary, "rows": rows,
                      "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {'cuda' if torch.cuda.is_available() else 'cpu'}"}))


if __name__ == "__main__":
    main()
