"""Pixel normalisation ``(x - mean) / scale``; the seed's values are mean 127, scale 255."""

from __future__ import annotations

import torch

from core import DEVICE, PREPARE, Batch, Transform


class PixelNorm(Transform):
    """``(x - mean) / scale`` on the stim (integer stim becomes float32), at preparation or on the device.

    ``mean``: the value subtracted, in the stim's units (127 for uint8 pixels).
    ``scale``: the divisor applied after subtracting ``mean`` (not 0; 255 maps uint8 pixels to
    about -0.5 to 0.5)."""

    stages = frozenset({PREPARE, DEVICE})

    def __init__(self, mean: float = 127.0, scale: float = 255.0) -> None:
        if scale == 0:
            raise ValueError("scale must not be 0")
        self.mean, self.scale = mean, scale

    def __call__(self, batch: Batch) -> Batch:
        stim = batch["stim"]
        if not torch.is_floating_point(stim):
            stim = stim.float()
        out = stim - self.mean  # a new tensor: the division can then run in place
        return {**batch, "stim": out.div_(self.scale)}
