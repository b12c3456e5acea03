"""Latent-search speed: the batched engine vs the per-sample reference, in the same run.

The generator and search of the mnist-adgan experiment of params.yaml (28×28 MNIST images; network, k, S, lr_z,
memory budget and seed as configured there: latent 64, base width 32, 19 steps, 3 restarts, lr_z 5e-2), untrained
(speed does not depend on training), on the CPU, on random targets. Three arms, the benchmark's own design: lr_θ = 0 (fast path),
lr_θ = 0 with the optional channels-last generator copy (not bit-comparable with the reference), and lr_θ = 6e-9
(per-pair generator copies). Reports samples/s of both, the achieved GFLOP/s of the engine (FLOPs counted by
torch.utils.flop_counter) against a float32 matmul peak measured in this run, and the largest relative difference
between engine and reference scores. The reference is models.latent_search_reference.reference_search.
One JSON object is the last line.

    python benchmarks/latent_search.py
    python benchmarks/latent_search.py --quick     # the smoke overlay's search (base width 16, 3 steps, 1 restart), fewer samples
    python benchmarks/latent_search.py --set experiments.mnist-adgan.model.search.memory_budget_mb=4096
"""

from __future__ import annotations

import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import common

EXPERIMENT = "mnist-adgan"
IMAGE_SHAPE = (1, 28, 28)  # MNIST's: the targets are random, no data is read


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    args = common.parser(__doc__).parse_args()
    loaded = common.settings(args)
    from models.inputs import InputSpec
    from models.latent_gans import mse_loss
    from models.latent_search import LatentSearch, initial_latents
    from models.latent_search_reference import reference_search
    from models.registry import get_detector

    exp = loaded.params.experiment(EXPERIMENT)
    # the experiment's networks, seeded as training seeds them, on the CPU (the benchmark's design: CPU peak, CPU chunking)
    detector = get_detector(exp.model.kind)(exp.model.replace(device="cpu"), InputSpec("image", IMAGE_SHAPE))
    generator = detector.generator.eval()
    search, latent_dim = exp.model.search, exp.model.network.latent_dim
    n_engine, n_theta, n_reference = (128, 16, 4) if args.quick else (1024, 64, 16)
    targets = torch.rand(n_engine, *IMAGE_SHAPE, generator=torch.Generator().manual_seed(1)) * 2 - 1
    z0 = initial_latents(range(n_engine), search.n_seeds, latent_dim, seed=search.seed)
    peak = matmul_peak_gflops()
    result = {"experiment": EXPERIMENT, "generator_params": sum(p.numel() for p in generator.parameters()),
              "device": "cpu", "k": search.steps, "n_seed": search.n_seeds, "search": search.to_dict(), "matmul_peak_gflops": round(peak, 1)}
    runs = (("lr_theta_0", 0.0, False, n_engine), ("lr_theta_0_channels_last", 0.0, True, n_engine), ("lr_theta_6e-9", 6e-9, False, n_theta))
    for label, lr_theta, channels_last, n in runs:
        cfg = search.replace(lr_theta=lr_theta, channels_last=channels_last)
        engine = LatentSearch(generator, latent_dim, mse_loss, cfg)
        with FlopCounterMode(display=False) as counter:
            engine.search(targets[:4], z0[:4])
        flops_per_sample = counter.get_total_flops() / 4
        engine.search(targets[:8], z0[:8])  # warm-up
        chunk = engine.samples_per_chunk(torch.device("cpu"))  # as the detectors chunk
        engine_s, _ = timed(lambda: [engine.search(targets[s : s + chunk], z0[s : s + chunk]) for s in range(0, n, chunk)])
        reference_s, reference_scores = timed(lambda: reference_search(generator, mse_loss, targets[:n_reference], z0[:n_reference], cfg))
        engine_scores = engine.search(targets[:n_reference], z0[:n_reference]).double()
        gflops = n * flops_per_sample / engine_s / 1e9
        result[label] = {
            "engine_samples_per_s": round(n / engine_s, 2),
            "reference_samples_per_s": round(n_reference / reference_s, 2),
            "speedup_vs_reference": round((n / engine_s) / (n_reference / reference_s), 2),
            "gflop_per_sample": round(flops_per_sample / 1e9, 4),
            "engine_gflops": round(gflops, 1),
            "fraction_of_peak": round(gflops / peak, 3),
            "max_rel_diff_vs_reference": float(((engine_scores - reference_scores).abs() / reference_scores.abs()).max()),
            "samples": {"engine": n, "reference": n_reference, "engine_chunk": chunk},
        }
    # the targets of the issue are stated at lr_θ = 0, for the default (exact) mode
    result.update({k: result["lr_theta_0"][k] for k in ("speedup_vs_reference", "fraction_of_peak", "max_rel_diff_vs_reference")})
    result["threads"] = torch.get_num_threads()
    common.emit("latent_search", loaded, result)


if __name__ == "__main__":
    main()
