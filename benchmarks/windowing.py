"""Windowing speed and memory on SMD: every machine of the mirror, prepared and windowed.

Issue 5's target: all SMD machines of the mirror in ≤ 10 s, with peak memory ≤ 2× the raw data.
Two phases, each in its own fresh process so its peak resident memory is its own:

1. prepare: read every machine's train/test/label files, split chronologically, fit the scaling on
   the train splits, transform, write the three parquet splits (the `prepare` stage, `prepare.smd`);
2. window: memory-map the prepared splits and build every window of every series (views), then
   gather one batch of 512 windows, as the trainer does.
3. epoch (not part of the target): what training reads. The train split as the train task gets it
   (``PreparedData.train``, a lazy ``WindowStack``), its finiteness check and checkpoint key, then
   every window once in shuffled batches of 512, as one epoch of ``fit`` gathers them. Its peak is
   compared with the size of every training window gathered at once, which training used to hold.

"Raw data" is the float32 values of all train and test rows (rows × 38 × 4 bytes); the text files are
about 2.3× larger. Peak memory is the process's peak resident set size minus its size after imports.
The download (a verified copy from the mirror) is done first and not timed. One JSON object is the last line.

    python benchmarks/windowing.py
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def phase(name: str, work: Path) -> dict:
    """Run one phase in this process (the child) and return its measurements."""
    import numpy as np

    from tasks.config import load_params
    from tasks.prepare import load_prepared, prepare_dataset

    params = load_params(REPO / "params.yaml")
    baseline = rss_mb()
    start = time.perf_counter()
    if name == "prepare":  # every declared machine, whatever the default run's prepare.smd.series.machines says
        settings = params.prepare["smd"].series
        prepare = params.prepare["smd"].model_copy(update={"series": settings.model_copy(update={"machines": None})})
        prepare_dataset.fn("smd", prepare, params.download["smd"], work / "raw", work / "prepared")
        out = {}
    elif name == "epoch":
        from models.checkpoint import data_key

        train = load_prepared(work / "prepared").train  # WindowStack (N, seq_len, C)
        key, bad = data_key(train, dtype=np.float32), train.first_nonfinite()
        order = np.random.default_rng(0).permutation(len(train))
        for i in range(0, len(order), 512):
            train[order[i : i + 512]]  # (512, seq_len, C), dropped after use as a training step drops it
        out = {"train_windows": len(train), "gathered_train_windows_mb": int(np.prod(train.shape)) * 4 / 2**20, "data_key": key,
               "first_nonfinite": bad}
    else:
        data = load_prepared(work / "prepared")
        windows = {key: data.series_windows(key) for key in ("train", "calib", "test")}
        counts = {key: sum(len(w) for _, _, w in ws) for key, ws in windows.items()}
        first = windows["train"][0][2]
        batch = first[np.arange(min(512, len(first)))]  # (512, seq_len, C): what one training step reads
        out = {"windows": counts, "batch_shape": list(batch.shape), "window_shape": list(data.input_shape)}
    return {"phase": name, "seconds": time.perf_counter() - start, "peak_rss_increase_mb": rss_mb() - baseline, **out}


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--phase":
        print(json.dumps(phase(sys.argv[2], Path(sys.argv[3]))))
        return
    from tasks.config import load_params
    from tasks.download import download_dataset
    from tasks.smd import read_smd_values

    params = load_params(REPO / "params.yaml")
    spec = params.download["smd"]
    with tempfile.TemporaryDirectory(prefix="gadflow-windowing-") as tmp:
        work = Path(tmp)
        download_dataset.fn("smd", spec, work / "raw")
        machines = spec.smd_machines()
        rows = sum(len(read_smd_values(work / "raw" / part / f"{m}.txt")) for m in machines for part in ("train", "test"))
        raw_mb = rows * 38 * 4 / 2**20
        text_mb = sum((work / "raw" / f.file).stat().st_size for f in spec.files.values()) / 2**20
        results = []
        for name in ("prepare", "window", "epoch"):
            child = subprocess.run([sys.executable, __file__, "--phase", name, str(work)], capture_output=True, text=True, check=True,
                                   env={**os.environ, "PYTHONWARNINGS": "ignore"})
            results.append(json.loads(child.stdout.strip().splitlines()[-1]))
    total = sum(r["seconds"] for r in results[:2])  # the target covers prepare + window
    peak = max(r["peak_rss_increase_mb"] for r in results[:2])
    summary = {
        "benchmark": "windowing", "dataset": "smd", "machines": len(machines), "rows": rows,
        "raw_float32_mb": raw_mb, "raw_text_mb": text_mb, "phases": results,
        "total_seconds": total, "peak_rss_increase_mb": peak, "peak_to_raw": peak / raw_mb,
        "targets": {"seconds": 10.0, "peak_to_raw": 2.0},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
    }
    for r in results:
        print(f"{r['phase']:>8}: {r['seconds']:.2f} s, peak RSS +{r['peak_rss_increase_mb']:.0f} MB")
    print(f"total {total:.2f} s for {len(machines)} machines ({rows:,} rows, {raw_mb:.0f} MB as float32, {text_mb:.0f} MB of text); "
          f"peak {peak:.0f} MB = {peak / raw_mb:.2f}× the raw data")
    epoch = results[2]
    print(f"one epoch of training reads: peak {epoch['peak_rss_increase_mb']:.0f} MB; every training window gathered at once would be "
          f"{epoch['gathered_train_windows_mb']:.0f} MB")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
