"""What the zoo's models share: the multi-head classifier around a body, the input and option
checks, and the layers more than one model uses (conv-BN-activation, squeeze-excitation,
drop path, channel LayerNorm).

An option check raises ``ConfigError`` with the option's name as its path: the core puts it
under the model's YAML path (``config error at model.vit.patch: ...``).

Every layer here is safe under ``bf16-mixed`` autocast: no in-place op on a tensor autograd
keeps, no float64, and nothing reads a device value on the host (the training step never
waits for the accelerator).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core import Batch, ConfigError, DatasetMeta
from plugins.zoo.pretrained import load_pretrained


class Classifier(nn.Module):
    """``body`` turns ``stim`` (N, C, H, W) into features (N, ``dim``); one linear head per
    dataset head turns them into logits. ``pretrained`` loads a run's weights (body and the
    heads whose shapes match: a checkpoint of another dataset fine-tunes)."""

    def __init__(self, meta: DatasetMeta, body: nn.Module, dim: int, pretrained: str | None) -> None:
        super().__init__()
        self.body = body
        self.heads = nn.ModuleDict({head: nn.Linear(dim, n) for head, n in meta.heads.items()})
        if pretrained:
            load_pretrained(self, pretrained, required="body.")

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        features = self.body(batch["stim"])
        return {head: layer(features) for head, layer in self.heads.items()}


def image_shape(meta: DatasetMeta, model: str) -> tuple[int, int, int]:
    """``(C, H, W)`` of the model's input; images over time are refused with the alternative."""
    if len(meta.stim_shape) != 3:
        raise ConfigError("", f"{model} takes images (C, H, W); dataset '{meta.name}' gives stim of shape "
                          f"{meta.stim_shape}", fix="for presentations over time use recurrent_cnn")
    channels, height, width = meta.stim_shape
    return channels, height, width


def check_stride(shape: tuple[int, int, int], stride: int, fix: str) -> None:
    """Refuse an input smaller than the model's total stride (its last feature map would be empty)."""
    if min(shape[1:]) < stride:
        raise ConfigError("", f"the input {shape[1]}x{shape[2]} is smaller than the model's total stride {stride}",
                          fix=fix)


def check_at_least_one(**values: int | tuple[int, ...]) -> None:
    """Every named option (each entry of a sequence, which must not be empty) is at least 1."""
    for name, value in values.items():
        entries = value if isinstance(value, (list, tuple)) else [value]
        if not entries or min(entries) < 1:
            each = " each (and not empty)" if isinstance(value, (list, tuple)) else ""
            raise ConfigError(name, f"{name} must be at least 1{each}, not {value}")


def check_fraction(name: str, value: float) -> None:
    if not 0 <= value < 1:
        raise ConfigError(name, f"{name} must be in [0, 1), not {value}")


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1,
            act: type[nn.Module] | None = nn.ReLU) -> nn.Sequential:
    """Conv (no bias, same padding) -> BatchNorm -> activation (none with ``act=None``)."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Channel gates from the globally pooled map: x * sigmoid(W2 silu(W1 mean(x)))."""

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.expand = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = self.expand(F.silu(self.reduce(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(gates)


class DropPath(nn.Module):
    """Stochastic depth: while training, drop a residual branch for a random ``p`` of the samples
    (and scale the kept ones by 1 / (1 - p))."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = 1 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * (torch.rand(shape, device=x.device, dtype=x.dtype) < keep).to(x.dtype) / keep


def drop_rates(drop_path: float, blocks: int) -> list[float]:
    """The drop path rate of each block: rising linearly from 0 to ``drop_path`` with depth."""
    return [drop_path * i / max(blocks - 1, 1) for i in range(blocks)]


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an (N, C, H, W) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
