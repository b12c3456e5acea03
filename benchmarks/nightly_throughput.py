"""Nightly scoring throughput: one partition scored end to end by the registered @champion, as nightly-score does it
(read the partition, check its schema, pyfunc predict, write the scored parquet atomically).

Two partitions, each scored by its experiment of params.yaml (its network sizes and search budgets), run through the
pipeline's own steps (prepare, then run_experiment: train, calibrate, score, report, register, promote) into a
temporary sqlite MLflow. Each model is trained for one epoch (the benchmark's own change,
experiments.<e>.model.training.epochs, recorded in the JSON: speed does not depend on how well a model is trained;
--train-epochs 0 keeps params.yaml's):
- smd-madgan: a 100,000-row SMD-shaped partition (38 sensor columns + id): the real SMD test rows of the mirror's
  machines, in order, cut at 100k rows;
- mnist-dcgan: the MNIST test set, 10,000 uint8 images (N, 1, 28, 28) in one .npy partition.
Loading the model (once per version per process) is timed apart from scoring (tasks.tracking.nightly, the plain
functions the nightly-score flow's tasks call). One JSON object is the last line.

    python benchmarks/nightly_throughput.py
    python benchmarks/nightly_throughput.py --rows 20000 --images 2000      # quicker
    python benchmarks/nightly_throughput.py --quick      # the smoke overlay's tiny settings, 20,000 rows and 2,000 images
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import common

log = common.log
EXPERIMENTS = {"smd-madgan": "smd.parquet", "mnist-dcgan": "mnist-test.npy"}  # experiment -> its partition


def smd_partition(raw: Path, channels: list[str], rows: int, path: Path) -> int:
    """The mirror's SMD test rows, machine after machine, cut at `rows`, with the model's channel names and an id."""
    from tasks.sources.smd import read_smd_values

    parts, total = [], 0
    for file in sorted((raw / "test").glob("machine-*.txt*")):
        values = read_smd_values(file)
        parts.append(values)
        total += len(values)
        if total >= rows:
            break
    values = np.concatenate(parts)[:rows]
    frame = pd.DataFrame(values.astype(np.float32), columns=channels).assign(id=np.arange(len(values)))
    frame.to_parquet(path)
    return len(frame)


def time_partition(name: str, partition: Path, params) -> dict:
    from tasks.tracking import nightly

    champion = nightly.resolve_champion(params.registry, name, params.nightly.alias)
    start = time.perf_counter()
    nightly._model(champion.uri, champion.tracking_uri)  # loaded once per version per process
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    result = nightly.score_partition(champion, str(partition), params.nightly)
    seconds = time.perf_counter() - start
    assert result.status == "scored", result
    return {"model": name, "version": champion.version, "rows": result.rows, "flagged": result.flagged,
            "load_seconds": load_s, "score_seconds": seconds, "rows_per_second": result.rows / seconds}


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--rows", type=int, default=None, help="rows of the SMD-shaped partition (default 100000; --quick: 20000)")
    parser.add_argument("--images", type=int, default=None, help="MNIST test images in the image partition (default 10000; --quick: 2000)")
    parser.add_argument("--train-epochs", type=int, default=1, help="epochs each model is trained for (default 1; 0: params.yaml's)")
    args = parser.parse_args()
    loaded = common.settings(args)
    from tasks.adapters import load_prepared
    from tasks.layout import raw_dir

    n_rows = args.rows if args.rows is not None else (20_000 if args.quick else 100_000)
    n_images = args.images if args.images is not None else (2_000 if args.quick else 10_000)
    results = []
    with common.workspace(prefix="gadflow-nightly-bench-") as work:
        # the sqlite registry and its artifacts live in the temporary folder; the nightly folders too
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
        incoming = work / "incoming"
        changes = {"nightly.incoming": str(incoming), "nightly.scored": str(work / "scored"), "nightly.quarantine": str(work / "quarantine"),
                   **({f"experiments.{name}.model.training.epochs": args.train_epochs for name in EXPERIMENTS} if args.train_epochs else {})}
        params = loaded.changed(changes)
        written: dict[str, int] = {}
        for name, partition in EXPERIMENTS.items():
            data_name = params.experiments[name].data
            data = load_prepared(common.prepare(params, data_name))
            common.run(params, name, to_registry=True)  # train, calibrate, score, report, register, promote to @champion
            (incoming / name).mkdir(parents=True)
            if data.kind == "series":
                written[name] = smd_partition(raw_dir(params.prepare[data_name].source), data.schema["input_channels"], n_rows, incoming / name / partition)
            else:
                np.save(incoming / name / partition, np.asarray(data.test[:n_images]))
                written[name] = min(n_images, len(data.test))
        for name, partition in EXPERIMENTS.items():
            row = time_partition(name, incoming / name / partition, params)
            assert row["rows"] == written[name], (row, written[name])
            results.append(row)
            log.info("%s: %d rows in %.1f s = %.0f rows/s (model load %.1f s)", name, row["rows"], row["score_seconds"], row["rows_per_second"], row["load_seconds"])
        os.environ.pop("MLFLOW_TRACKING_URI")
    common.emit("nightly_throughput", loaded, {
        "design": {"changes": {k: v for k, v in changes.items() if not k.startswith("nightly.")}, "rows": n_rows, "images": n_images},
        "partitions": results,
        "smd_rows_per_second": results[0]["rows_per_second"],
        "mnist_images_per_second": results[1]["rows_per_second"],
        "threads": torch.get_num_threads(),
    })


if __name__ == "__main__":
    main()
