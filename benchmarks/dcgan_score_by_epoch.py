"""Diagnostic: how the DCGAN detector's score (1 - D(x)) ranks test anomalies as training goes on.

Trains the mnist-dcgan experiment of params.yaml (its model settings, on its prepared data) for one normal digit
(the benchmark's own change, prepare.<data>.normal_classes, recorded in the JSON) and, after every epoch, records
the test AUROC together with label-free training signals (mean D on the normal calibration split, mean D on
generated samples). Training is the model's own (``fit`` with an end-of-epoch hook: the train step has none). This
is a diagnostic for the report: nothing here selects an epoch or any other setting, and the pipeline never sees
these test figures. One JSON object is the last line.

    python benchmarks/dcgan_score_by_epoch.py --digit 0
    python benchmarks/dcgan_score_by_epoch.py --quick      # the smoke overlay's tiny settings (one epoch, base width 16)
    python benchmarks/dcgan_score_by_epoch.py --quick --set experiments.mnist-dcgan.model.training.epochs=3
"""

from __future__ import annotations

import numpy as np

import common

log = common.log


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--experiment", default="mnist-dcgan", help="a dcgan experiment on MNIST images (default mnist-dcgan)")
    parser.add_argument("--digit", type=int, default=0, help="the normal digit (default 0)")
    args = parser.parse_args()
    loaded = common.settings(args)
    from models.registry import get_detector
    from tasks.adapters import load_prepared
    from tasks.reports.metrics import ranking_metrics

    # this diagnostic is about D's own score, 1 − D(x), whatever score_method the experiment sets
    params, changes = common.one_class(loaded, args.experiment, args.digit,
                                       also={f"experiments.{args.experiment}.model.score_method": "discriminator"})
    exp = params.experiment(args.experiment)
    rows = []
    with common.workspace():
        data = load_prepared(common.prepare(params, exp.data))
        detector = get_detector(exp.model.kind)(exp.model, data.input_spec)
        test, labels, calib = np.asarray(data.test), np.asarray(data.test_labels), np.asarray(data.calib)

        def record_epoch(record, _samples) -> None:
            generated = detector.sample(2000, seed=1)
            row = {
                "epoch": record.epoch,
                "test_auroc": ranking_metrics(labels, detector.score(test))["auroc"],
                "mean_D_calibration": float(1 - detector.score(calib).mean()),
                "mean_D_generated": float(1 - detector.score(generated).mean()),
                "loss_d": record.stats["loss_d"],
                "loss_g": record.stats["loss_g"],
            }
            rows.append(row)
            log.info("epoch %3d  test AUROC %.4f  mean D(calib) %.3f  mean D(G(z)) %.3f",
                     row["epoch"], row["test_auroc"], row["mean_D_calibration"], row["mean_D_generated"])

        detector.fit(np.asarray(data.train), on_epoch_end=record_epoch, progress=False)
    common.emit("dcgan_score_by_epoch", loaded, {"experiment": args.experiment, "digit": args.digit, "design": {"changes": changes},
                                                 "test_auroc_by_epoch": [round(r["test_auroc"], 4) for r in rows], "rows": rows})


if __name__ == "__main__":
    main()
