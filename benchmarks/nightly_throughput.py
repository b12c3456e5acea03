"""Nightly scoring throughput: one partition scored end to end by the registered @champion, as nightly-score does it
(read the partition, check its schema, pyfunc predict, write the scored parquet atomically).

Two partitions, each with the default network sizes and search budgets of params.yaml (trained for one epoch:
speed does not depend on how well a model is trained), registered and promoted in a temporary sqlite MLflow:
- smd-madgan: a 100,000-row SMD-shaped partition (38 sensor columns + id): the real SMD test rows of the mirror's
  machines, in order, cut at 100k rows;
- mnist-dcgan: the MNIST test set, 10,000 uint8 images (N, 1, 28, 28) in one .npy partition.
Loading the model (once per version per process) is timed apart from scoring. One JSON object is the last line.

    python benchmarks/nightly_throughput.py
    python benchmarks/nightly_throughput.py --rows 20000 --images 2000      # quicker
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
import pandas as pd
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tasks import nightly  # noqa: E402
from tasks.calibrate import calibrate_model  # noqa: E402
from tasks.config import NightlyParams, load_params  # noqa: E402
from tasks.download import download_dataset  # noqa: E402
from tasks.evaluate import evaluate_scores  # noqa: E402
from tasks.prepare import load_prepared, prepare_dataset  # noqa: E402
from tasks.promote import promote_model  # noqa: E402
from tasks.register import register_model  # noqa: E402
from tasks.score import score_test_set  # noqa: E402
from tasks.smd import read_smd_values  # noqa: E402
from tasks.train import train_model  # noqa: E402

log = logging.getLogger("benchmark")


def champion_of(name: str, params, work: Path) -> Path:
    """Train (1 epoch), calibrate, score, evaluate, register and promote experiment `name`; returns its data folder."""
    exp = params.experiment(name)
    exp = exp.model_copy(update={"train": exp.train.model_copy(update={"epochs": 1})})
    prep = params.prepare[exp.train.data]
    spec = params.download[prep.source]
    raw = download_dataset.fn(prep.source, spec, work / "raw" / prep.source)
    data_dir = prepare_dataset.fn(exp.train.data, prep, spec, raw, work / "prepared" / exp.train.data)
    out = work / "outputs" / name
    model_dir = train_model.fn(name, exp.train, data_dir, out)
    calibrate_model.fn(exp.calibrate, model_dir, data_dir, out)
    scores = score_test_set.fn(model_dir, data_dir, out, exp.evaluate.score_batch_size)
    report = evaluate_scores.fn(name, exp.evaluate, scores, model_dir, data_dir, out)
    register_model.fn(exp, params.registry, model_dir, report, out)
    promote_model.fn(params.registry, params.promote, out)
    return data_dir


def smd_partition(work: Path, data_dir: Path, rows: int, path: Path) -> int:
    """The mirror's SMD test rows, machine after machine, cut at `rows`, with the model's channel names and an id."""
    channels = load_prepared(data_dir).schema["input_channels"]
    parts, total = [], 0
    for file in sorted((work / "raw" / "smd" / "test").glob("machine-*.txt")):
        values = read_smd_values(file)
        parts.append(values)
        total += len(values)
        if total >= rows:
            break
    values = np.concatenate(parts)[:rows]
    frame = pd.DataFrame(values.astype(np.float32), columns=channels).assign(id=np.arange(len(values)))
    frame.to_parquet(path)
    return len(frame)


def time_partition(name: str, partition: Path, registry, params: NightlyParams) -> dict:
    champion = nightly.resolve_champion.fn(registry, name, "champion")
    start = time.perf_counter()
    nightly._model(champion.uri, champion.tracking_uri)  # loaded once per version per process
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    result = nightly.score_partition.fn(champion, str(partition), params)
    seconds = time.perf_counter() - start
    assert result.status == "scored", result
    return {"model": name, "version": champion.version, "rows": result.rows, "flagged": result.flagged,
            "load_seconds": load_s, "score_seconds": seconds, "rows_per_second": result.rows / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the SMD-shaped partition")
    parser.add_argument("--images", type=int, default=10_000, help="MNIST test images in the image partition")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    os.environ.setdefault("GADFLOW_DATA_MIRROR", str(REPO.parent / "shared" / "datasets"))
    params = load_params(args.params)
    results = []
    with tempfile.TemporaryDirectory(prefix="gadflow-nightly-bench-") as tmp:
        work = Path(tmp)
        os.chdir(work)  # the sqlite registry and its artifacts live in the temporary folder
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
        incoming = work / "incoming"
        nightly_params = NightlyParams(incoming=str(incoming), scored=str(work / "scored"), quarantine=str(work / "quarantine"))
        smd_dir = champion_of("smd-madgan", params, work)
        (incoming / "smd-madgan").mkdir(parents=True)
        n_rows = smd_partition(work, smd_dir, args.rows, incoming / "smd-madgan" / "smd.parquet")
        mnist_dir = champion_of("mnist-dcgan", params, work)
        (incoming / "mnist-dcgan").mkdir(parents=True)
        np.save(incoming / "mnist-dcgan" / "mnist-test.npy", np.asarray(load_prepared(mnist_dir).test[: args.images]))
        for name, partition in (("smd-madgan", incoming / "smd-madgan" / "smd.parquet"), ("mnist-dcgan", incoming / "mnist-dcgan" / "mnist-test.npy")):
            row = time_partition(name, partition, params.registry, nightly_params)
            results.append(row)
            log.info("%s: %d rows in %.1f s = %.0f rows/s (model load %.1f s)", name, row["rows"], row["score_seconds"], row["rows_per_second"], row["load_seconds"])
        assert results[0]["rows"] == n_rows
    print(json.dumps({
        "benchmark": "nightly_throughput",
        "partitions": results,
        "smd_rows_per_second": results[0]["rows_per_second"],
        "mnist_images_per_second": results[1]["rows_per_second"],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), {'cuda' if torch.cuda.is_available() else 'cpu'}",
    }))


if __name__ == "__main__":
    main()
