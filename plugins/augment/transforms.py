"""Batched augmentations on the device: one random draw per sample, no per-sample Python.

Both act on the last two axes (H, W) and run only while training. Neither makes the host
wait for the accelerator: the random choices stay on the device and select through
``torch.where`` and ``gather``, never through ``nonzero``, ``unique`` or a boolean mask.
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
    """Mirror each sample left-right with probability ``p``.

    ``p``: the probability that a sample is mirrored, drawn per sample and batch (0 to 1)."""

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
        chosen = torch.rand(len(stim), device=stim.device) < self.p
        chosen = chosen.view(-1, *([1] * (stim.dim() - 1)))
        return {**batch, "stim": torch.where(chosen, stim.flip(-1), stim)}


class RandomTranslate(Transform):
    """Shift each sample by up to ``pixels`` in x and y (zero fill): pad, then a random crop.

    ``pixels``: the largest shift along each axis, in pixels (>= 0; each shift from -pixels to
    pixels is equally likely; 0 leaves the batch unchanged)."""

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
        dy, dx = shift // side, shift % side
        # each output pixel (i, j) of sample b reads padded pixel (i + dy_b, j + dx_b): one
        # gather over the flattened frames, with the window's offsets computed on the device
        rows = torch.arange(height, device=stim.device).view(1, height, 1) + dy.view(-1, 1, 1)
        cols = torch.arange(width, device=stim.device).view(1, 1, width) + dx.view(-1, 1, 1)
        where = (rows * (width + 2 * p) + cols).flatten(1)  # (B, H*W) into the (H+2p)*(W+2p) frame
        frames = padded.reshape(len(stim), -1, padded.shape[-2] * padded.shape[-1])  # (B, planes, pixels)
        out = frames.gather(2, where.unsqueeze(1).expand(-1, frames.shape[1], -1))
        return {**batch, "stim": out.view(stim.shape)}
