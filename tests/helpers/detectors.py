"""Tiny models for tests: each model's config at CPU-cheap sizes, built from nested dicts like params.yaml's."""

from __future__ import annotations

import copy

from models.inputs import InputSpec
from models.registry import get_detector

# Tiny, CPU-only settings per model, nested as in params.yaml's `experiments.<name>.model`.
TINY: dict[str, dict] = {
    "dcgan": {"network": {"latent_dim": 8, "base_channels": 4}, "training": {"epochs": 3, "batch_size": 16, "n_fixed_samples": 4}},
    "adgan": {"network": {"latent_dim": 8, "base_channels": 4}, "training": {"epochs": 6, "batch_size": 16, "n_fixed_samples": 4},
              "search": {"n_seeds": 2, "steps": 10, "lr_z": 0.1, "lr_theta": 1e-4}},
    "anogan": {"network": {"latent_dim": 8, "base_channels": 4}, "training": {"epochs": 6, "batch_size": 16, "n_fixed_samples": 4},
               "search": {"n_seeds": 2, "steps": 10, "lr_z": 0.1, "lr_theta": 0.0}},
    "egbad": {"network": {"latent_dim": 8, "base_channels": 4, "hidden_dims": [32, 16]},
              "training": {"epochs": 6, "batch_size": 16, "n_fixed_samples": 4, "lr_g": 1e-3, "lr_d": 1e-3}},
    "ganomaly": {"network": {"latent_dim": 8, "base_channels": 4, "hidden_dims": [32, 16]},
                 "training": {"epochs": 20, "batch_size": 16, "n_fixed_samples": 4, "lr_g": 1e-3, "lr_d": 1e-3}},
    "madgan": {"network": {"latent_dim": 4, "hidden_dim": 16}, "training": {"epochs": 6, "batch_size": 16, "n_fixed_samples": 4, "lr_g": 1e-3, "lr_d": 1e-3},
               "search": {"n_seeds": 2, "steps": 15, "lr_z": 0.1, "lr_theta": 0.0}, "normaliser_windows": 64},
    "knn": {"k": 5},  # the references: their defaults are already tiny
    "pca": {"variance": 0.95},
}


def merged(base: dict, changes: dict) -> dict:
    """``changes`` over ``base``, nested mappings merged key by key."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def config(kind: str, changes: dict | None = None, base: dict | None = None):
    """Model ``kind``'s config: ``base`` (default: its TINY settings) with ``changes`` merged over it, on the CPU."""
    return get_detector(kind).config_cls.from_dict(merged({"kind": kind, "device": "cpu", **(TINY[kind] if base is None else base)}, changes or {}))


def build(kind: str, inputs: InputSpec, changes: dict | None = None, base: dict | None = None):
    """A fresh detector of model ``kind`` for ``inputs``."""
    return get_detector(kind)(config(kind, changes, base), inputs)
