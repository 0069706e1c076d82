"""``convnext``: ConvNeXt (Liu et al. 2022) at the atto/femto sizes of timm.

A patchify stem (``stem`` x ``stem``, stride ``stem``), then stages of blocks (7x7 depthwise
conv, LayerNorm, an inverted MLP with GELU, layer scale, drop path) joined by 2x2 stride-2
downsampling. ImageNet uses ``stem: 4``; the default 2 suits 32x32 inputs. The total stride
is ``stem * 2 ** (len(depths) - 1)``.

    atto:  depths [2, 2, 6, 2], dims [40, 80, 160, 320]   (the defaults)
    femto: depths [2, 2, 6, 2], dims [48, 96, 192, 384]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core import ConfigError, DatasetMeta
from plugins.zoo.blocks import (
    Classifier,
    DropPath,
    LayerNorm2d,
    check_at_least_one,
    check_fraction,
    check_stride,
    drop_rates,
    image_shape,
)

LAYER_SCALE = 1e-6  # the paper's initial layer scale: each block starts near the identity


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, drop_path: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.expand = nn.Linear(dim, 4 * dim)
        self.project = nn.Linear(4 * dim, dim)
        self.scale = nn.Parameter(torch.full((dim,), LAYER_SCALE))
        self.drop = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))  # channels last for the norm and the MLP
        y = self.project(F.gelu(self.expand(y))) * self.scale
        return x + self.drop(y.permute(0, 3, 1, 2))


class ConvNeXt(Classifier):
    """A ConvNeXt, atto-sized by default, one linear head per dataset head.

    ``depths``: blocks per stage (atto and femto: [2, 2, 6, 2]).
    ``dims``: channels per stage, one per entry of depths (atto: [40, 80, 160, 320]; femto: [48, 96, 192, 384]).
    ``drop_path``: the stochastic depth rate of the last block, rising linearly from 0 (in [0, 1)).
    ``stem``: the patchify stem's kernel and stride (4 on ImageNet; 2 suits 32x32).
    ``pretrained``: a core-train checkpoint whose matching weights are loaded (see docs/plugins/zoo.md).
    """

    def __init__(self, meta: DatasetMeta, depths: tuple[int, ...] = (2, 2, 6, 2), dims: tuple[int, ...] = (40, 80, 160, 320),
                 drop_path: float = 0.1, stem: int = 2, pretrained: str | None = None) -> None:
        shape = image_shape(meta, "convnext")
        check_at_least_one(depths=depths, dims=dims, stem=stem)
        check_fraction("drop_path", drop_path)
        if len(depths) != len(dims):
            raise ConfigError("dims", f"depths and dims give one entry per stage: {len(depths)} depths but {len(dims)} dims",
                              fix="give as many dims as depths")
        check_stride(shape, stem * 2 ** (len(depths) - 1),
                     "use a larger image_size, a smaller stem or fewer stages")
        rates = iter(drop_rates(drop_path, sum(depths)))
        layers: list[nn.Module] = [nn.Conv2d(shape[0], dims[0], stem, stem), LayerNorm2d(dims[0])]
        for stage, (depth, dim) in enumerate(zip(depths, dims)):
            if stage:
                layers += [LayerNorm2d(dims[stage - 1]), nn.Conv2d(dims[stage - 1], dim, 2, 2)]
            layers += [ConvNeXtBlock(dim, next(rates)) for _ in range(depth)]
        body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(dims[-1]))
        super().__init__(meta, body, dims[-1], pretrained)
