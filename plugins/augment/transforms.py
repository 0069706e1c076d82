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
        chosen = (torch.rand(len(stim), device=stim.device) < self.p).nonzero().squeeze(1)
        out = stim.clone()
        out[chosen] = stim.index_select(0, chosen).flip(-1)  # only the chosen samples are flipped
        return {**batch, "stim": out}


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
        height, width = stim.shape[-2:]
        padded = F.pad(stim, (p, p, p, p))
        side = 2 * p + 1
        shift = torch.randint(0, side * side, (len(stim),), device=stim.device)
        out = torch.empty_like(stim)
        # one slice per distinct shift ((2p+1)^2 at most), each applied to all samples drawn it
        for value in shift.unique().tolist():
            rows = (shift == value).nonzero().squeeze(1)
            dy, dx = divmod(value, side)
            out[rows] = padded.index_select(0, rows)[..., dy : dy + height, dx : dx + width]
        return {**batch, "stim": out}
