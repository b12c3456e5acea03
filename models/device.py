"""Device choice and the seeded random streams every model draws from."""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import torch

from .errors import GadflowError


class Stream(IntEnum):
    """Stream ids for ``derived_generator`` beside the per-epoch ones (0, 1, ...): distinct, so no two streams collide."""

    FIXED_NOISE = 10_001  # the fixed-noise sample grid recorded after every epoch (models.trainer)
    SAMPLE = 10_002  # Detector.sample: the generated samples of the Monte Carlo threshold
    ENCODER = 10_003  # the warm-start encoder's initial weights and training noise (models.latent_gans)
    NORMALISER = 10_004  # the training windows MAD-GAN's score terms are standardised on (models.madgan)
    SELECTION = 10_005  # the epoch-selection set: its normals subset and synthetic anomalies (models.selection)


def pick_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU; 'cpu' and 'cuda[:N]' are taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GadflowError(f"device '{name}' requested but CUDA is not available; use 'auto' or 'cpu'")
    return torch.device(name)


def derived_generator(seed: int, *stream: int) -> torch.Generator:
    """A CPU torch.Generator for one named stream (e.g. (seed, epoch)), independent of global state.

    Deriving every random stream from (seed, stream ids) is what makes a resumed run
    bit-identical to an uninterrupted one: no RNG state has to survive the interruption.
    """
    mixed = np.random.SeedSequence([int(seed), *(int(s) for s in stream)]).generate_state(1, dtype=np.uint64)[0]
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(mixed))
    return gen
