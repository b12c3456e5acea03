"""The latent search written as its definition: one (sample, restart) at a time, a deep copy of the generator for
each, a plain loop. Slow on purpose. It is the oracle the batched engine (``models.latent_search``) is tested
against, and the per-sample reference benchmarks/latent_search.py measures the engine's speed against."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .latent_search import LatentSearchConfig, PerSampleLoss


def reference_search(generator: nn.Module, loss_fn: PerSampleLoss, targets: torch.Tensor, z0: torch.Tensor, config: LatentSearchConfig) -> torch.Tensor:
    """targets (n, ...), z0 (n, S, latent) -> final losses (n, S), computed pair by pair."""
    n, s = z0.shape[:2]
    out = torch.empty(n, s, dtype=torch.float64)
    for i in range(n):
        for j in range(s):
            g = copy.deepcopy(generator).eval()  # θ_ij,0 = θ
            for p in g.parameters():
                p.requires_grad_(config.lr_theta > 0)
            z = z0[i, j].clone().unsqueeze(0).requires_grad_(True)  # (1, latent)
            x = targets[i].unsqueeze(0)  # (1, ...)
            opt_z = torch.optim.Adam([z], lr=config.lr_z)
            opt_theta = torch.optim.Adam(g.parameters(), lr=config.lr_theta) if config.lr_theta > 0 else None
            for _ in range(config.steps):
                loss = loss_fn(g(z), x).sum()
                opt_z.zero_grad()
                if opt_theta is not None:
                    opt_theta.zero_grad()
                loss.backward()
                opt_z.step()
                if opt_theta is not None:
                    opt_theta.step()
            with torch.no_grad():
                out[i, j] = loss_fn(g(z), x).double().item()
    return out
