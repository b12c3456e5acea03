"""Windowing speed and memory on SMD: every machine of the mirror, prepared and windowed.

Issue 5's target: all SMD machines of the mirror in ≤ 10 s, with peak memory ≤ 2× the raw data. The prepare entry
`smd` of params.yaml (its windowing: seq_len, stride, scaling) is run over every declared machine: the benchmark's
own change, prepare.smd.series.machines, recorded in the JSON (--machines picks others; --quick keeps the params'
own machines, with the smoke overlay: one). Two phases, each in its own fresh process so its peak resident memory is
its own:

1. prepare: read every machine's train/test/label files, split chronologically, fit the scaling on
   the train splits, transform, write the three splits (the pipeline's prepare step, `prepare.smd`);
2. window: memory-map the prepared splits and build every window of every series (views), then
   gather one batch of 512 windows, as the trainer does.
3. epoch (not part of the target): what training reads. The train split as the train step gets it
   (``Data.train``, a lazy ``WindowStack``), its finiteness check and checkpoint key, then
   every window once in shuffled batches of 512, as one epoch of ``fit`` gathers them. Its peak is
   compared with the size of every training window gathered at once, which training used to hold.

"Raw data" is the float32 values of all train and test rows (rows × 38 × 4 bytes); the text files are
about 2.3× larger. Peak memory is the process's peak resident set size minus its size after imports.
The download (a verified copy from the mirror) is done first and not timed. One JSON object is the last line.

    python benchmarks/windowing.py
    python benchmarks/windowing.py --quick          # the smoke overlay's prepare.smd: one machine, seq_len 10
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import common

DATA = "smd"  # the prepare entry
PARAMS_FILE = "benchmark-params.json"  # in the work folder: the settings the phases run (validated by each)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def phase(name: str) -> dict:
    """Run one phase in this process (the child, in the work folder) and return its measurements."""
    import numpy as np

    from models.storage import data_key
    from tasks.adapters import load_prepared
    from tasks.adapters import series as _series  # noqa: F401  (imported before the baseline, as the other modules)
    from tasks.layout import prepared_dir
    from tasks.sources import smd as _smd  # noqa: F401
    from tasks.steps import prepare as _prepare  # noqa: F401

    params = common.validated(json.loads(Path(PARAMS_FILE).read_text()))
    baseline = rss_mb()
    start = time.perf_counter()
    if name == "prepare":
        common.prepare(params, DATA)  # the raw files are there: no download
        out = {}
    elif name == "epoch":
        train = load_prepared(prepared_dir(DATA)).train  # WindowStack (N, seq_len, C)
        key, bad = data_key(train, dtype=np.float32), train.first_nonfinite()
        order = np.random.default_rng(0).permutation(len(train))
        for i in range(0, len(order), 512):
            train[order[i : i + 512]]  # (512, seq_len, C), dropped after use as a training step drops it
        out = {"train_windows": len(train), "gathered_train_windows_mb": int(np.prod(train.shape)) * 4 / 2**20, "data_key": key,
               "first_nonfinite": bad}
    else:
        data = load_prepared(prepared_dir(DATA))
        windows = {key: data.series_windows(key) for key in ("train", "calib", "test")}
        counts = {key: sum(len(w) for _, _, w in ws) for key, ws in windows.items()}
        first = windows["train"][0][2]
        batch = first[np.arange(min(512, len(first)))]  # (512, seq_len, C): what one training step reads
        out = {"windows": counts, "batch_shape": list(batch.shape), "window_shape": list(data.input_spec.shape)}
    return {"phase": name, "seconds": time.perf_counter() - start, "peak_rss_increase_mb": rss_mb() - baseline, **out}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--phase":
        print(json.dumps(phase(sys.argv[2])))
        return
    parser = common.parser(__doc__)
    parser.add_argument("--machines", nargs="+", default=None,
                        help="SMD machines to prepare (default: every declared machine, issue 5's target; --quick: the params' prepare.smd.series.machines)")
    args = parser.parse_args()
    loaded = common.settings(args)
    from tasks.layout import raw_dir
    from tasks.sources.download import download_dataset
    from tasks.sources.smd import machine_file, read_smd_values

    base = loaded.params
    spec = base.source_spec(DATA)
    machines = args.machines or ((base.prepare[DATA].series.machines or spec.smd_machines()) if args.quick else spec.smd_machines())
    changes = {f"prepare.{DATA}.series.machines": machines}
    raw_params = json.loads(json.dumps(loaded.raw))
    for key, value in changes.items():
        common.set_key(raw_params, key, value)
    params = common.validated(raw_params)
    source = params.prepare[DATA].source
    with common.workspace(prefix="gadflow-windowing-") as work:
        raw = download_dataset(source, spec, raw_dir(source))
        Path(PARAMS_FILE).write_text(json.dumps(raw_params))
        rows = sum(len(read_smd_values(machine_file(raw, part, m))) for m in machines for part in ("train", "test"))
        raw_mb = rows * 38 * 4 / 2**20
        parts = {(f.file.partition("/")[0], f.file.removesuffix(".txt").partition("/")[2]) for f in spec.files.values()}
        text_mb = sum(machine_file(raw, part, m).stat().st_size for part, m in parts if m in machines) / 2**20
        results = []
        for name in ("prepare", "window", "epoch"):
            child = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--phase", name], cwd=work, capture_output=True, text=True,
                                   env={**os.environ, "PYTHONWARNINGS": "ignore"})
            if child.returncode != 0:
                raise SystemExit(f"phase {name} failed ({child.returncode}):\n{child.stdout[-2000:]}{child.stderr[-3000:]}")
            results.append(json.loads(child.stdout.strip().splitlines()[-1]))
    total = sum(r["seconds"] for r in results[:2])  # the target covers prepare + window
    peak = max(r["peak_rss_increase_mb"] for r in results[:2])
    summary = {
        "dataset": DATA, "machines": len(machines), "machine_names": machines, "design": {"changes": changes},
        "seq_len": params.prepare[DATA].series.seq_len, "stride": params.prepare[DATA].series.stride, "rows": rows,
        "raw_float32_mb": raw_mb, "raw_text_mb": text_mb, "phases": results,
        "total_seconds": total, "peak_rss_increase_mb": peak, "peak_to_raw": peak / raw_mb,
        "targets": {"seconds": 10.0, "peak_to_raw": 2.0},
        "python": platform.python_version(),
    }
    for r in results:
        print(f"{r['phase']:>8}: {r['seconds']:.2f} s, peak RSS +{r['peak_rss_increase_mb']:.0f} MB")
    print(f"total {total:.2f} s for {len(machines)} machines ({rows:,} rows, {raw_mb:.0f} MB as float32, {text_mb:.0f} MB of text); "
          f"peak {peak:.0f} MB = {peak / raw_mb:.2f}× the raw data")
    epoch = results[2]
    print(f"one epoch of training reads: peak {epoch['peak_rss_increase_mb']:.0f} MB; every training window gathered at once would be "
          f"{epoch['gathered_train_windows_mb']:.0f} MB")
    common.emit("windowing", loaded, summary)


if __name__ == "__main__":
    main()
