"""Batched augmentations on the device: one random draw per sample, no per-sample Python.

Both act on the last two axes (H, W) and run only while training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core import DEVICE, Batch, Layout, Transform


def _check_image(name: str, layout: Layout) -> Layout:
    if not layout.axes.endswith("HW"):
        raise ValueError(f"{name} works on (H, W) frames; the stim's axes are {layout.axes} {layout.shape}")
    return layout


class RandomFlip(Transform):
    """Mirror each sample left-right with probability ``p``."""

    stages = frozenset({DEVICE})
    train_only = True

    def __init__(self, p: float = 0.5) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"p must be in [0, 1], not {p}")
        self.p = p

    def output_layout(self, layout: Layout) -> Layout:
        return _check_image("random_flip", layout)

    def __call__(self, batch: Batch) -> Batch:
        stim = batch["stim"]
        flip = torch.rand(len(stim), device=stim.device) < self.p
        flip = flip.view(-1, *([1] * (stim.dim() - 1)))
        return {**batch, "stim": torch.where(flip, stim.flip(-1), stim)}


class RandomTranslate(Transform):
    """Shift each sample by up to ``pixels`` in x and y (zero fill): pad, then a random crop."""

    stages = frozenset({DEVICE})
    train_only = True

    def __init__(self, pixels: int = 2) -> None:
        if pixels < 0:
            raise ValueError(f"pixels must be >= 0, not {pixels}")
        self.pixels = pixels

    def output_layout(self, layout: Layout) -> Layout:
        return _check_image("random_translate", layout)

    def __call__(self, batch: Batch) -> Batch:
        stim, p = batch["stim"], self.pixels
        if p == 0:
            return batch
        n, height, width = len(stim), stim.shape[-2], stim.shape[-1]
        padded = F.pad(stim, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n, 1), device=stim.device)
        dx = torch.randint(0, 2 * p + 1, (n, 1), device=stim.device)
        rows = (dy + torch.arange(height, device=stim.device)).view(n, *([1] * (stim.dim() - 3)), height, 1)
        cols = (dx + torch.arange(width, device=stim.device)).view(n, *([1] * (stim.dim() - 3)), 1, width)
        rows = rows.expand(*stim.shape[:-1], 1).expand(*stim.shape[:-2], height, width + 2 * p)
        shifted = padded.gather(-2, rows)
        cols = cols.expand(*stim.shape)
        return {**batch, "stim": shifted.gather(-1, cols)}
