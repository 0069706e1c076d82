"""``resnet``: CIFAR-style ResNet-18/34 (a 3x3 stem at full resolution, four stages of basic
blocks) and the fast ResNet-9 of the DAWNBench CIFAR-10 entries (conv-pool stages, two
residual blocks, max-pooled features).

``width`` is the first stage's channel count (64 in the papers); the stages double it. The
total stride is 8, so any input of at least 8x8 works.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from core import DatasetMeta
from plugins.zoo.blocks import Classifier, check_at_least_one, check_stride, conv_bn, image_shape

BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
STRIDE = 8


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a shortcut (a strided 1x1 conv-BN where the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(conv_bn(cin, cout, stride=stride), conv_bn(cout, cout, act=None))
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else conv_bn(cin, cout, 1, stride, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.convs(x) + self.shortcut(x))


class Residual(nn.Module):
    """x + f(x): ResNet-9's residual blocks."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.inner(x)


def resnet_body(channels: int, depth: int, width: int) -> nn.Sequential:
    """Features (N, 8 * width) of a ResNet-18/34."""
    layers: list[nn.Module] = [conv_bn(channels, width)]
    cin = width
    for stage, blocks in enumerate(BLOCKS[depth]):
        cout = width * 2**stage
        for block in range(blocks):
            layers.append(BasicBlock(cin, cout, 2 if stage and not block else 1))
            cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def resnet9_body(channels: int, width: int) -> nn.Sequential:
    """Features (N, 8 * width) of the fast ResNet-9: prep, then three conv-pool stages, the
    first and last with a residual pair of convs."""

    def down(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(conv_bn(cin, cout), nn.MaxPool2d(2, ceil_mode=True))

    def pair(c: int) -> Residual:
        return Residual(nn.Sequential(conv_bn(c, c), conv_bn(c, c)))

    w = width
    return nn.Sequential(conv_bn(channels, w), down(w, 2 * w), pair(2 * w), down(2 * w, 4 * w),
                         down(4 * w, 8 * w), pair(8 * w), nn.AdaptiveMaxPool2d(1), nn.Flatten())


class ResNet(Classifier):
    """A ResNet for images of any size (8x8 or more), one linear head per dataset head.

    ``depth``: 18 or 34 (CIFAR-style basic-block ResNets) or 9 (the fast ResNet-9).
    ``width``: channels of the first stage, doubled by each of the next three (64 in the papers).
    ``pretrained``: a core-train checkpoint whose matching weights are loaded (see docs/plugins/zoo.md).
    """

    def __init__(self, meta: DatasetMeta, depth: Literal[9, 18, 34] = 18, width: int = 64,
                 pretrained: str | None = None) -> None:
        shape = image_shape(meta, "resnet")
        check_at_least_one(width=width)
        check_stride(shape, STRIDE, "use an image_size of 8 or more")
        body = resnet9_body(shape[0], width) if depth == 9 else resnet_body(shape[0], depth, width)
        super().__init__(meta, body, 8 * width, pretrained)
