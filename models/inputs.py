"""What one sample of a model's input is: an image, a feature row or a window of a series (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .settings import Settings, SettingsError

InputKind = Literal["image", "tabular", "window"]
INPUT_RANK = {"image": 3, "tabular": 1, "window": 2}  # dimensions of one sample of each kind


@dataclass(frozen=True)
class InputSpec(Settings):
    """What one sample is. Recorded in model.pt, so a loaded model checks what it is given."""

    kind: InputKind
    shape: tuple[int, ...]  # (C, H, W) images | (D,) features | (seq_len, C) windows
    frame_shape: tuple[int, ...] | None = None  # windows of image frames: each time step is a flattened (C, H, W)

    def check(self) -> None:
        if self.kind not in INPUT_RANK:
            raise SettingsError(f"kind: one of {', '.join(INPUT_RANK)}, got {self.kind!r}")
        rank = INPUT_RANK[self.kind]
        if len(self.shape) != rank or min(self.shape) < 1:
            raise SettingsError(f"shape: a {self.kind} sample has {rank} positive dimensions, got {self.shape}")
        if self.frame_shape is not None and (self.kind != "window" or len(self.frame_shape) != 3
                                             or int(np.prod(self.frame_shape)) != self.shape[1]):
            raise SettingsError(f"frame_shape: {self.frame_shape} is not a (C, H, W) frame of the {self.shape[-1]} values of a time step")
