"""A small multi-head CNN: conv-BN-ReLU-pool twice, a hidden layer, one linear head per head."""

from __future__ import annotations

import torch
from torch import nn

from core import Batch, DatasetMeta


class SimpleCNN(nn.Module):
    """Two conv blocks (3x3 convolution, BatchNorm, ReLU, 2x2 max pool), a hidden layer, one
    linear head per dataset head; takes images (C, H, W).

    ``conv1``: the output channels of the first conv block (>= 1).
    ``conv2``: the output channels of the second conv block, average-pooled to 2x2 for the
    hidden layer (>= 1).
    ``fc_hidden``: the width of the hidden layer the heads read (>= 1).
    ``dropout``: the dropout probability after the hidden layer, in [0, 1) (0: none)."""

    def __init__(self, meta: DatasetMeta, conv1: int = 32, conv2: int = 64, fc_hidden: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        if len(meta.stim_shape) != 3:
            raise ValueError(f"simple_cnn takes images (C, H, W); dataset '{meta.name}' gives stim of shape {meta.stim_shape}")
        if min(conv1, conv2, fc_hidden) < 1:
            raise ValueError("conv1, conv2 and fc_hidden must be at least 1")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), not {dropout}")
        channels = meta.stim_shape[0]
        self.features = nn.Sequential(
            _block(channels, conv1), _block(conv1, conv2), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(conv2 * 4, fc_hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
        )
        self.heads = nn.ModuleDict({head: nn.Linear(fc_hidden, n) for head, n in meta.heads.items()})

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        hidden = self.features(batch["stim"])
        return {head: layer(hidden) for head, layer in self.heads.items()}


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.MaxPool2d(2))
