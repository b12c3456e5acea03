"""Diagnostic: scores on the DCGAN discriminator's features against its own score 1 − D(x), epoch by epoch.

Issue 16 lists "a score on D's features" as a candidate for mnist-dcgan, whose score 1 − D(x) decays as G improves.
This trains the mnist-dcgan experiment of params.yaml on one normal digit and, after the listed epochs, scores with
D's last conv block f(x) (B, F): the distance to the 5th nearest of up to 4,000 training normals in f-space, and the
Mahalanobis distance in f-space (PCA to 95 % of the training normals' variance, then a Ledoit-Wolf covariance; both
fitted on training normals only). For each score it records the label-free selection AUROC (calibration normals
against synthetic anomalies made from training normals, models.selection) and the test AUROC, which is printed for
understanding and chooses nothing. No score here is part of the pipeline. One JSON object is the last line.

    python benchmarks/dcgan_feature_scores.py --digit 8 --every 4
    python benchmarks/dcgan_feature_scores.py --quick
"""

from __future__ import annotations

import numpy as np
import torch

import common

log = common.log
K = 5  # the neighbour whose distance is the score, as the knn reference's


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--experiment", default="mnist-dcgan", help="a dcgan experiment on MNIST (default mnist-dcgan)")
    parser.add_argument("--digit", type=int, default=0, help="the normal digit (default 0)")
    parser.add_argument("--every", type=int, default=1, help="measure after epoch 1, every n-th epoch and the last (default 1)")
    parser.add_argument("--fit-rows", type=int, default=4000, help="training normals the feature scores are fitted on (a seeded subset)")
    args = parser.parse_args()
    loaded = common.settings(args)
    from sklearn.covariance import LedoitWolf
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    from models.registry import get_detector
    from models.selection import SelectionSet, subset, synthetic_anomalies
    from tasks.adapters import load_prepared
    from tasks.reports.metrics import ranking_metrics

    # this diagnostic is about D's own score, 1 − D(x), whatever score_method the experiment sets
    params, changes = common.one_class(loaded, args.experiment, args.digit,
                                       also={f"experiments.{args.experiment}.model.score_method": "discriminator"})
    exp = params.experiment(args.experiment)
    rows: list[dict] = []
    with common.workspace():
        data = load_prepared(common.prepare(params, exp.data))
        detector = get_detector(exp.model.kind)(exp.model, data.input_spec)
        train = np.asarray(data.train)
        fit_rows = train[subset(np.arange(len(train)), args.fit_rows, seed=0)]
        selection = SelectionSet(np.asarray(data.calib), synthetic_anomalies(train, 2000, seed=exp.model.training.seed), "label_free")
        test, labels = np.asarray(data.test), np.asarray(data.test_labels)

        def features(x: np.ndarray) -> np.ndarray:
            out = []
            with torch.no_grad():
                for start in range(0, len(x), 1024):
                    batch = detector.to_model_space(torch.from_numpy(np.array(x[start : start + 1024])))
                    out.append(detector.discriminator.features(batch).flatten(1).cpu().numpy())
            return np.concatenate(out).astype(np.float64)  # (N, F)

        def record_epoch(record, _samples) -> None:  # eval mode
            epoch, last = record.epoch, exp.model.training.epochs
            if not (epoch == 1 or epoch % args.every == 0 or epoch == last):
                return
            fitted = features(fit_rows)
            neighbours = NearestNeighbors(n_neighbors=K).fit(fitted)
            pca = PCA(n_components=0.95, svd_solver="full").fit(fitted)
            covariance = LedoitWolf().fit(pca.transform(fitted))
            scores = {
                "discriminator": lambda x: detector.score(x),  # the model's own 1 − D(x)
                "feature_knn": lambda x: neighbours.kneighbors(features(x))[0][:, -1],
                "feature_mahalanobis": lambda x: covariance.mahalanobis(pca.transform(features(x))),
            }
            row = {"epoch": epoch, "feature_dim": int(fitted.shape[1]), "pca_components": int(pca.n_components_)}
            for name, score in scores.items():
                row[f"{name}_selection_auroc"] = selection.auroc(score(selection.normals), score(selection.anomalies))
                row[f"{name}_test_auroc"] = ranking_metrics(labels, score(test))["auroc"]
            rows.append(row)
            log.info("epoch %3d  " + "  ".join(f"{n}: selection %.4f test %.4f" for n in scores), epoch,
                     *[row[f"{n}_{k}_auroc"] for n in scores for k in ("selection", "test")])

        detector.fit(train, on_epoch_end=record_epoch, progress=False)
    common.emit("dcgan_feature_scores", loaded, {"experiment": args.experiment, "digit": args.digit, "design": {"changes": changes},
                                                 "k": K, "fit_rows": len(fit_rows), "rows": rows})


if __name__ == "__main__":
    main()
