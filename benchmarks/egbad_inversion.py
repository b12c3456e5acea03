"""Label-free check of a BiGAN/EGBAD inversion: does the encoder E carry information about its input?

EGBAD scores ‖x − G(E(x))‖₁ (plus a discriminator term). That only ranks anomalies if G(E(x)) depends on x. After
every epoch this trains the experiment's model (params.yaml's settings, with any --set) and measures, on the normal
calibration split (never trained on, no labels), the mean residual of each sample against its own reconstruction
and against the reconstruction of another calibration sample (a fixed shuffle). A ratio own / shuffled near 1 means
E(x) tells G nothing about x: the score then measures only how far x lies from a fixed point. The weights measured
are those the model would score with (the moving average with training.ema_decay > 0). No test data is read, so
this check may choose EGBAD's training settings. One JSON object is the last line.

    python benchmarks/egbad_inversion.py                                   # kdd99-egbad as params.yaml trains it
    python benchmarks/egbad_inversion.py --set experiments.kdd99-egbad.model.training.lr_g=1e-5
    python benchmarks/egbad_inversion.py --quick                           # the smoke overlay's tiny settings
"""

from __future__ import annotations

import numpy as np
import torch

import common

log = common.log


def residuals(detector, rows: np.ndarray, order: np.ndarray, batch_size: int = 4096) -> tuple[float, float]:
    """Mean ‖x − G(E(x))‖₁ and mean ‖x − G(E(x_π))‖₁ over ``rows``, π = ``order`` (a derangement of the rows)."""
    own, shuffled = [], []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            idx = np.arange(start, min(start + batch_size, len(rows)))
            x = detector.to_model_space(torch.from_numpy(np.asarray(rows[idx])))  # (B, ...)
            other = detector.to_model_space(torch.from_numpy(np.asarray(rows[order[idx]])))
            own.append((x - detector.generator(detector.encoder(x))).abs().flatten(1).sum(1))  # (B,)
            shuffled.append((x - detector.generator(detector.encoder(other))).abs().flatten(1).sum(1))
    return float(torch.cat(own).mean()), float(torch.cat(shuffled).mean())


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--experiment", default="kdd99-egbad", help="an egbad experiment (default kdd99-egbad)")
    parser.add_argument("--rows", type=int, default=5000, help="calibration normals measured (a seeded subset; default 5000)")
    args = parser.parse_args()
    loaded = common.settings(args)
    from models.registry import get_detector
    from models.selection import subset
    from tasks.adapters import load_prepared

    exp = loaded.params.experiment(args.experiment)
    if exp.model.kind != "egbad":
        parser.error(f"{args.experiment} is a '{exp.model.kind}' model: this check needs an egbad encoder and generator")
    rows: list[dict] = []
    with common.workspace():
        data = load_prepared(common.prepare(loaded.params, exp.data))
        detector = get_detector("egbad")(exp.model, data.input_spec)
        calib = np.asarray(data.calib)
        calib = calib[subset(np.arange(len(calib)), args.rows, seed=0)]
        rng = np.random.default_rng(0)
        order = (np.arange(len(calib)) + rng.integers(1, len(calib))) % len(calib)  # a fixed cyclic shift: no row paired with itself

        def record_epoch(record, _samples) -> None:  # called in eval mode, with the weights the model scores with
            own, shuffled = residuals(detector, calib, order)
            rows.append({"epoch": record.epoch, "own_residual": own, "shuffled_residual": shuffled, "ratio": own / shuffled,
                         **{k: v for k, v in record.stats.items() if k.startswith("loss")}, "seconds": record.seconds})
            log.info("epoch %3d  ‖x − G(E(x))‖₁ %.3f  against another sample's reconstruction %.3f  ratio %.3f  (%.0fs)",
                     record.epoch, own, shuffled, own / shuffled, record.seconds)

        detector.fit(np.asarray(data.train), on_epoch_end=record_epoch, progress=False)
    common.emit("egbad_inversion", loaded, {"experiment": args.experiment, "training": exp.model.training.to_dict(),
                                            "calibration_rows": len(calib), "ratio_by_epoch": [round(r["ratio"], 4) for r in rows], "rows": rows})


if __name__ == "__main__":
    main()
