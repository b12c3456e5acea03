"""The latent-search engine shared by AnoGAN, ADGAN and MAD-GAN.

For each target x_i and restart j = 1..S:
    z_ij,0 ~ N(0, I), drawn from a generator keyed by (seed, key_i, j); θ_ij,0 = θ (a private copy);
    for t = 1..k: one Adam step on z_ij (lr_z) and, when lr_θ > 0, on θ_ij (lr_θ),
                  both minimising l(G_θij(z_ij), x_i);
    result: the final loss l(G_θij,k(z_ij,k), x_i).
A detector's score is usually the mean over j of these final losses.

All (sample, seed) pairs of a chunk run in one batched forward/backward. Adam is element-wise and
the summed loss gives each pair its own gradient, so this equals running each pair alone. With
lr_θ = 0 the generator's parameters get no gradients at all (fast path); with lr_θ > 0 each pair
has its own copy of the parameters, evaluated with ``torch.func.functional_call`` under ``vmap``.
The shared generator is never modified.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from .device import derived_generator
from .settings import Settings, setting

PerSampleLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (M, ...) generated, (M, ...) target -> (M,)
StepHook = Callable[[int, torch.Tensor], None]  # (step t = 0..k, generated (M, ...)) - for figures only


@dataclass(frozen=True)
class LatentSearchConfig(Settings):
    """The search's settings: S restarts × k Adam steps per sample (ADGAN, AnoGAN, MAD-GAN)."""

    n_seeds: int = setting(3, ge=1, le=64)  # S: restarts per sample
    steps: int = setting(19, ge=0, le=10_000)  # k: Adam steps per restart
    lr_z: float = setting(5e-2, ge=0.0, le=10.0)
    lr_theta: float = setting(6e-9, ge=0.0, le=1.0)  # 0 = generator frozen (fast path)
    memory_budget_mb: float = setting(1024.0, gt=0.0, le=1_000_000.0)  # bounds the chunk of samples searched at once
    seed: int = 0  # the restarts' starts: z_ij,0 is drawn from a generator keyed by (seed, sample bytes, j)
    max_pairs_per_chunk: int = setting(768, ge=1, le=10_000_000)  # fast path: CPU throughput peaks near 256 samples × 3 restarts (measured)
    max_pairs_per_chunk_theta: int = setting(48, ge=1, le=10_000_000)  # with per-pair θ copies: flat from 6 to 192 pairs, collapses beyond (measured)
    # Fast path only: run a private channels-last copy of G. Faster transposed convolutions on CPU, but
    # other rounding, which Adam can amplify (up to 3e-4 relative in the final losses, measured): not
    # bit-comparable with the per-sample reference, so off by default (docs/benchmarks.md).
    channels_last: bool = False


@dataclass(frozen=True)
class FrozenGeneratorSearch(LatentSearchConfig):
    """The search of a model that keeps its generator frozen (AnoGAN, MAD-GAN): z alone is searched, lr_θ is 0.
    (The model's own config refuses any other lr_θ, naming the model.)"""

    lr_theta: float = setting(0.0, ge=0.0, le=1.0)


def sample_keys(samples: np.ndarray) -> np.ndarray:
    """A 63-bit key per sample from its bytes: the same sample gets the same restarts anywhere in any batch."""
    flat = np.ascontiguousarray(samples).reshape(len(samples), -1)
    return np.array([int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little") >> 1 for row in flat], dtype=np.int64)


def initial_latents(keys: Sequence[int], n_seeds: int, latent_dim: int, seed: int) -> torch.Tensor:
    """(N, S, latent_dim) standard-normal starts; row i depends on (seed, keys[i]) only."""
    out = torch.empty(len(keys), n_seeds, latent_dim)
    for i, key in enumerate(keys):
        out[i] = torch.randn(n_seeds, latent_dim, generator=derived_generator(seed, int(key)))
    return out


@contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """eval() and requires_grad=False for the duration; restores both afterwards."""
    modes = [m.training for m in modules]
    flags = [[p.requires_grad for p in m.parameters()] for m in modules]
    try:
        for m in modules:
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
        yield
    finally:
        for m, mode, fl in zip(modules, modes, flags):
            m.train(mode)
            for p, f in zip(m.parameters(), fl):
                p.requires_grad_(f)


class LatentSearch:
    """Batched, exact latent search for one generator and one per-sample loss."""

    def __init__(self, generator: nn.Module, latent_dim: int, loss_fn: PerSampleLoss, config: LatentSearchConfig) -> None:
        self.generator = generator
        self.latent_dim = latent_dim
        self.loss_fn = loss_fn
        self.config = config

    # --- memory-bounded chunking ------------------------------------------------------------
    def pairs_per_chunk(self, device: torch.device) -> int:
        """How many (sample, seed) pairs fit the memory budget, from one measured forward pass."""
        activation_bytes = 0

        def count(_module, _inputs, output) -> None:
            nonlocal activation_bytes
            if torch.is_tensor(output):
                activation_bytes += output.numel() * output.element_size()

        hooks = [m.register_forward_hook(count) for m in self.generator.modules()]
        try:
            with torch.no_grad(), frozen(self.generator):
                self.generator(torch.zeros(1, self.latent_dim, device=device))
        finally:
            for h in hooks:
                h.remove()
        per_pair = 3 * activation_bytes  # forward activations kept for backward, plus gradients
        if self.config.lr_theta > 0:
            n_params = sum(p.numel() for p in self.generator.parameters())
            per_pair += 5 * 4 * n_params  # own copy, its gradient, two Adam moments, vmap temporaries
        cap = self.config.max_pairs_per_chunk_theta if self.config.lr_theta > 0 else self.config.max_pairs_per_chunk
        return max(1, min(cap, int(self.config.memory_budget_mb * 2**20 // per_pair)))

    def samples_per_chunk(self, device: torch.device) -> int:
        return max(1, self.pairs_per_chunk(device) // self.config.n_seeds)

    # --- search -----------------------------------------------------------------------------
    def search(self, targets: torch.Tensor, z0: torch.Tensor, on_step: StepHook | None = None) -> torch.Tensor:
        """targets (n, ...) and starts z0 (n, S, latent) -> final losses (n, S). One chunk: no splitting.

        ``on_step(t, generated)`` sees G(z) before each update and after the last (t = 0..k).
        """
        n, s = z0.shape[:2]
        x = targets.repeat_interleave(s, dim=0)  # (n*S, ...): pair (i, j) at row i*S + j
        z = z0.reshape(n * s, self.latent_dim).to(targets.device).clone().requires_grad_(True)
        with frozen(self.generator):
            if self.config.lr_theta > 0:
                final = self._search_with_theta(x, z, on_step)
            else:
                final = self._search_fast(x, z, on_step)
        return final.reshape(n, s)

    def _search_fast(self, x: torch.Tensor, z: torch.Tensor, on_step: StepHook | None) -> torch.Tensor:
        generator = self.generator
        if self.config.channels_last:  # a private copy: the shared generator is never touched
            generator = copy.deepcopy(self.generator).to(memory_format=torch.channels_last)
        opt_z = torch.optim.Adam([z], lr=self.config.lr_z)
        for t in range(self.config.steps):
            # minimise l(G(z_ij), x_i) over z_ij, each pair independently (summed loss, element-wise Adam)
            generated = generator(z)
            if on_step is not None:
                on_step(t, generated.detach())
            loss = self.loss_fn(generated, x).sum()
            opt_z.zero_grad(set_to_none=True)
            loss.backward()
            opt_z.step()
        with torch.no_grad():
            generated = generator(z)
            if on_step is not None:
                on_step(self.config.steps, generated)
            return self.loss_fn(generated, x)  # (M,)

    def _search_with_theta(self, x: torch.Tensor, z: torch.Tensor, on_step: StepHook | None) -> torch.Tensor:
        m = z.shape[0]
        buffers = dict(self.generator.named_buffers())
        # every pair gets its own copy θ_ij of the generator's parameters: (M, *shape) each
        thetas = {name: p.detach().unsqueeze(0).repeat(m, *([1] * p.dim())).requires_grad_(True) for name, p in self.generator.named_parameters()}

        def generate_one(theta: dict[str, torch.Tensor], z_one: torch.Tensor) -> torch.Tensor:
            return functional_call(self.generator, {**theta, **buffers}, (z_one.unsqueeze(0),)).squeeze(0)

        generate = vmap(generate_one, in_dims=(0, 0))  # (M copies, M latents) -> (M, C, H, W)
        opt_z = torch.optim.Adam([z], lr=self.config.lr_z)
        opt_theta = torch.optim.Adam(list(thetas.values()), lr=self.config.lr_theta)
        for t in range(self.config.steps):
            # minimise l(G_θij(z_ij), x_i) jointly over z_ij and θ_ij
            generated = generate(thetas, z)
            if on_step is not None:
                on_step(t, generated.detach())
            loss = self.loss_fn(generated, x).sum()
            opt_z.zero_grad(set_to_none=True)
            opt_theta.zero_grad(set_to_none=True)
            loss.backward()
            opt_z.step()
            opt_theta.step()
        with torch.no_grad():
            generated = generate(thetas, z)
            if on_step is not None:
                on_step(self.config.steps, generated)
            return self.loss_fn(generated, x)  # (M,)


class LatentSearchScorer:
    """Latent-search scoring of stored inputs with one generator: what ADGAN, AnoGAN and MAD-GAN share.

    A sample's restarts are keyed by its bytes as stored (uint8 pixels, float32 values), so it gets the same
    starts anywhere in any batch; chunks follow the engine's memory budget; ``frozen_modules`` stay in eval mode
    without gradients throughout. ``targets`` maps a model-space batch to what the loss compares with (default:
    itself); ``warm_start`` maps it to restart 0's start (default: a random start like the others).
    """

    def __init__(self, generator: nn.Module, noise_dim: int, loss_fn: PerSampleLoss, config: LatentSearchConfig, *,
                 to_model_space: Callable[[np.ndarray], torch.Tensor], input_dtype: np.dtype, frozen_modules: Sequence[nn.Module],
                 targets: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 warm_start: Callable[[torch.Tensor], torch.Tensor] | None = None, name: str = "latent search") -> None:
        self.generator, self.noise_dim, self.loss_fn, self.config = generator, noise_dim, loss_fn, config
        self.to_model_space, self.input_dtype = to_model_space, np.dtype(input_dtype)
        self.frozen_modules = tuple(frozen_modules)
        self.targets = targets or (lambda x: x)
        self.warm_start = warm_start
        self.name = name

    def engine(self, **changes) -> LatentSearch:
        config = replace(self.config, **changes) if changes else self.config
        return LatentSearch(self.generator, self.noise_dim, self.loss_fn, config)

    def search_inputs(self, batch: np.ndarray, n_seeds: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A stored batch (B, ...) -> the loss targets (B, ...) and the restarts' starts z0 (B, S, noise_dim), on the device."""
        batch = np.ascontiguousarray(batch, dtype=self.input_dtype)
        x = self.to_model_space(batch)
        with torch.no_grad():
            targets = self.targets(x)
        z0 = initial_latents(sample_keys(batch), n_seeds, self.noise_dim, self.config.seed).to(x.device)
        if self.warm_start is not None:  # restart 0 begins at the warm start
            with torch.no_grad():
                z0[:, 0] = self.warm_start(x)
        return targets, z0

    def losses(self, inputs: np.ndarray, progress: bool = False, keep_best: bool = False):
        """Final losses (N, S) float64, each row depending on its own sample only; with ``keep_best`` also the best
        restart's generated sample per input (N, ...) float32, in model space."""
        engine = self.engine()
        chunk = engine.samples_per_chunk(next(self.generator.parameters()).device)
        s, steps = self.config.n_seeds, self.config.steps
        losses, best = [], []
        with frozen(*self.frozen_modules), tqdm(total=len(inputs), unit="sample", desc=self.name, disable=not progress or None) as bar:
            for start in range(0, len(inputs), chunk):
                batch = inputs[start : start + chunk]
                targets, z0 = self.search_inputs(batch, s)
                final: list[torch.Tensor] = []
                hook = (lambda t, generated: final.append(generated) if t == steps else None) if keep_best else None
                chunk_losses = engine.search(targets, z0, on_step=hook)  # (b, S)
                losses.append(chunk_losses.double().detach().cpu().numpy())
                if keep_best:
                    generated = final[0].reshape(len(batch), s, *final[0].shape[1:])  # (b, S, ...)
                    pick = chunk_losses.argmin(dim=1)  # the restart that reconstructs best
                    best.append(generated[torch.arange(len(batch)), pick].detach().cpu().numpy())
                bar.update(len(batch))
        if not losses:
            return (np.zeros((0, s)), None) if keep_best else np.zeros((0, s))
        return (np.concatenate(losses), np.concatenate(best)) if keep_best else np.concatenate(losses)

    def trajectory(self, sample: np.ndarray, lr_theta: float, to_frame: Callable[[torch.Tensor], np.ndarray]) -> np.ndarray:
        """One stored sample (1, ...) -> ``to_frame`` of G(z_t) for t = 0..k of its first restart at this lr_θ (k+1, ...)."""
        frames: list[np.ndarray] = []
        engine = self.engine(n_seeds=1, lr_theta=lr_theta)
        with frozen(*self.frozen_modules):
            targets, z0 = self.search_inputs(sample, n_seeds=1)
            engine.search(targets, z0, on_step=lambda t, generated: frames.append(to_frame(generated[:1])))
        return np.concatenate(frames)
