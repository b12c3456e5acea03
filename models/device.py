"""Device choice and seeding, shared by every detector."""

from __future__ import annotations

import random

import numpy as np
import torch

from .errors import GadflowError


def pick_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU; 'cpu' and 'cuda[:N]' are taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GadflowError(f"device '{name}' requested but CUDA is not available; use 'auto' or 'cpu'")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch global RNGs (the detectors also use explicit generators)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derived_generator(seed: int, *stream: int) -> torch.Generator:
    """A CPU torch.Generator for one named stream (e.g. (seed, epoch)), independent of global state.

    Deriving every random stream from (seed, stream ids) is what makes a resumed run
    bit-identical to an uninterrupted one: no RNG state has to survive the interruption.
    """
    mixed = np.random.SeedSequence([seed, *stream]).generate_state(1, dtype=np.uint64)[0]
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(mixed))
    return gen
