"""Diagnostic: how the DCGAN detector's score (1 - D(x)) ranks test anomalies as training goes on.

Trains the mnist-dcgan experiment of params.yaml for one normal digit and, after every epoch, records
the test AUROC together with label-free training signals (mean D on the normal calibration split,
mean D on generated samples). This is a diagnostic for the report: nothing here selects an epoch or
any other setting, and the pipeline never sees these test figures.

    python benchmarks/dcgan_score_by_epoch.py --digit 0
    python benchmarks/dcgan_score_by_epoch.py --quick      # 3 epochs, small net, < 1 minute
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from models import get_detector  # noqa: E402
from tasks.config import load_params  # noqa: E402
from tasks.download import download_dataset  # noqa: E402
from tasks.metrics import ranking_metrics  # noqa: E402
from tasks.prepare import load_prepared, prepare_dataset  # noqa: E402

log = logging.getLogger("diagnostic")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--experiment", default="mnist-dcgan")
    parser.add_argument("--digit", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    log.setLevel(logging.INFO)
    os.environ.setdefault("GADFLOW_DATA_MIRROR", str(REPO.parent / "shared" / "datasets"))
    params = load_params(args.params)
    exp = params.experiment(args.experiment)
    prep = params.prepare[exp.train.data].model_copy(update={"normal_classes": [args.digit]})
    train = exp.train.model_copy(update={"epochs": 3, "base_channels": 8} if args.quick else {})

    with tempfile.TemporaryDirectory(prefix="gadflow-diag-") as tmp:
        raw = download_dataset.fn(prep.source, params.download[prep.source], Path(tmp) / "raw")
        data = load_prepared(prepare_dataset.fn("diag", prep, params.download[prep.source], raw, Path(tmp) / "prepared"))
        cls = get_detector(train.model)
        detector = cls(cls.config_cls(channels=data.channels, size=data.size, **train.detector_fields()))
        test, labels, calib = np.asarray(data.test), np.asarray(data.test_labels), np.asarray(data.calib)
        generated = None
        rows = []

        def record_epoch(record, _samples) -> None:
            nonlocal generated
            generated = detector.sample(2000, seed=1)
            row = {
                "epoch": record.epoch,
                "test_auroc": ranking_metrics(labels, detector.score(test))["auroc"],
                "mean_D_calibration": float(1 - detector.score(calib).mean()),
                "mean_D_generated": float(1 - detector.score(generated).mean()),
                "loss_d": record.loss_d,
                "loss_g": record.loss_g,
            }
            rows.append(row)
            log.info("epoch %3d  test AUROC %.4f  mean D(calib) %.3f  mean D(G(z)) %.3f",
                     row["epoch"], row["test_auroc"], row["mean_D_calibration"], row["mean_D_generated"])

        detector.fit(np.asarray(data.train), on_epoch_end=record_epoch, progress=False)
    print(json.dumps({"benchmark": "dcgan_score_by_epoch", "digit": args.digit, "quick": args.quick,
                      "test_auroc_by_epoch": [round(r["test_auroc"], 4) for r in rows], "rows": rows}))


if __name__ == "__main__":
    main()
