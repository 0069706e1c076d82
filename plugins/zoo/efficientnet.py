"""``efficientnet``: EfficientNet-B0 (Tan & Le 2019) with width and depth multipliers.

A 3x3 stem, seven stages of MBConv blocks (1x1 expansion, depthwise conv, squeeze-excitation
on a quarter of the block's input channels, 1x1 projection, drop path on the residual),
a 1x1 head conv to 1280 channels, global pooling. ``width`` scales every channel count
(rounded to a multiple of 8), ``depth`` every stage's block count (rounded up): B0 is
1.0/1.0, B1 1.0/1.1, B2 1.1/1.2. ImageNet's stem has stride 2 (total stride 32); the
default ``stem_stride: 1`` keeps a 32x32 input at 2x2 before pooling (total stride 16).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from core import ConfigError, DatasetMeta
from plugins.zoo.blocks import (
    Classifier,
    DropPath,
    SqueezeExcite,
    check_fraction,
    check_stride,
    conv_bn,
    drop_rates,
    image_shape,
)

# B0's stages: expansion ratio, kernel, stride, output channels, blocks
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
STEM, HEAD = 32, 1280


def round_channels(channels: float, divisor: int = 8) -> int:
    """The nearest multiple of ``divisor``, never less than 90% of ``channels`` (the paper's rule)."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int, drop_path: float) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [conv_bn(cin, hidden, 1, act=nn.SiLU)] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, kernel, stride, groups=hidden, act=nn.SiLU),
                   SqueezeExcite(hidden, max(1, cin // 4)), conv_bn(hidden, cout, 1, act=None)]
        self.layers = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout
        self.drop = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layers(x)
        return x + self.drop(y) if self.residual else y


class EfficientNet(Classifier):
    """An EfficientNet (B0 by default), one linear head per dataset head.

    ``width``: the channel multiplier (B0 1.0, B2 1.1; 0.25 for small data).
    ``depth``: the multiplier of each stage's block count (B0 1.0, B2 1.2).
    ``drop_path``: the stochastic depth rate of the last block, rising linearly from 0 (in [0, 1)).
    ``stem_stride``: 2 as on ImageNet (total stride 32) or 1 for small images (total stride 16).
    ``pretrained``: a core-train checkpoint whose matching weights are loaded (see docs/plugins/zoo.md).
    """

    def __init__(self, meta: DatasetMeta, width: float = 1.0, depth: float = 1.0, drop_path: float = 0.2,
                 stem_stride: Literal[1, 2] = 1, pretrained: str | None = None) -> None:
        shape = image_shape(meta, "efficientnet")
        for name, value in (("width", width), ("depth", depth)):
            if value <= 0:
                raise ConfigError(name, f"{name} is a multiplier and must be positive, not {value}")
        check_fraction("drop_path", drop_path)
        check_stride(shape, stem_stride * math.prod(s[2] for s in STAGES),
                     "use a larger image_size, or stem_stride: 1")
        repeats = [math.ceil(blocks * depth) for *_, blocks in STAGES]
        rates = iter(drop_rates(drop_path, sum(repeats)))
        cin = round_channels(STEM * width)
        layers: list[nn.Module] = [conv_bn(shape[0], cin, 3, stem_stride, act=nn.SiLU)]
        for (expand, kernel, stride, channels, _), blocks in zip(STAGES, repeats):
            cout = round_channels(channels * width)
            for block in range(blocks):
                layers.append(MBConv(cin, cout, expand, kernel, stride if block == 0 else 1, next(rates)))
                cin = cout
        head = round_channels(HEAD * width)
        body = nn.Sequential(*layers, conv_bn(cin, head, 1, act=nn.SiLU), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        super().__init__(meta, body, head, pretrained)
