"""``vit``: a Vision Transformer (Dosovitskiy et al. 2021) for small images.

The image is cut into ``patch`` x ``patch`` patches (the patch must divide both sides),
each embedded linearly, a class token and learned position embeddings are added, and
``depth`` pre-norm transformer blocks (``num_heads``-head self-attention, a GELU MLP of
``mlp_ratio * dim``, drop path) follow; the class token's final state feeds the heads. At
32x32 with ``patch: 4`` the sequence is 64 patches + 1 token. Attention is
``F.scaled_dot_product_attention`` (flash/memory-efficient kernels on a GPU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core import ConfigError, DatasetMeta
from plugins.zoo.blocks import Classifier, DropPath, check_at_least_one, check_fraction, drop_rates, image_shape


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.project = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        return self.project(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, length, dim))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        hidden = max(1, round(dim * mlp_ratio))
        self.norm1, self.attention = nn.LayerNorm(dim), Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attention(self.norm1(x)))
        return x + self.drop(self.mlp(self.norm2(x)))


class ViTBody(nn.Module):
    """(N, C, H, W) -> the class token's final state (N, dim)."""

    def __init__(self, channels: int, tokens: int, patch: int, dim: int, depth: int, num_heads: int,
                 mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        self.embed = nn.Conv2d(channels, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*(TransformerBlock(dim, num_heads, mlp_ratio, p) for p in drop_rates(drop_path, depth)))
        self.norm = nn.LayerNorm(dim)

    def forward(self, stim: torch.Tensor) -> torch.Tensor:
        patches = self.embed(stim).flatten(2).transpose(1, 2)  # (N, tokens, dim)
        cls = self.cls.to(patches.dtype).expand(len(patches), -1, -1)
        x = torch.cat([cls, patches], 1) + self.position.to(patches.dtype)
        return self.norm(self.blocks(x))[:, 0]


class ViT(Classifier):
    """A Vision Transformer (ViT-Tiny-sized by default, 6 blocks), one linear head per dataset head.

    ``patch``: the side of the square patches, which must divide the input's height and width.
    ``dim``: the token width.
    ``depth``: the number of transformer blocks.
    ``num_heads``: attention heads per block (dim must be divisible by it).
    ``mlp_ratio``: the MLP's hidden width as a multiple of dim.
    ``drop_path``: the stochastic depth rate of the last block, rising linearly from 0 (in [0, 1)).
    ``pretrained``: a core-train checkpoint whose matching weights are loaded (see docs/plugins/zoo.md).
    """

    def __init__(self, meta: DatasetMeta, patch: int = 4, dim: int = 192, depth: int = 6, num_heads: int = 3,
                 mlp_ratio: float = 4.0, drop_path: float = 0.0, pretrained: str | None = None) -> None:
        channels, height, width = image_shape(meta, "vit")
        check_at_least_one(patch=patch, dim=dim, depth=depth, num_heads=num_heads)
        check_fraction("drop_path", drop_path)
        if mlp_ratio <= 0:
            raise ConfigError("mlp_ratio", f"mlp_ratio must be positive, not {mlp_ratio}")
        if dim % num_heads:
            raise ConfigError("num_heads", f"dim {dim} does not split into {num_heads} heads",
                              fix="use a num_heads that divides dim (or a dim divisible by num_heads)")
        divisors = [p for p in range(1, min(height, width) + 1) if height % p == 0 and width % p == 0]
        if patch > min(height, width):
            raise ConfigError("patch", f"patch {patch} is larger than the input {height}x{width}",
                              fix=f"use a patch that divides both sides (one of {divisors}) or a larger image_size")
        if height % patch or width % patch:
            raise ConfigError("patch", f"patch {patch} does not divide the input {height}x{width}",
                              fix=f"use a patch that divides both sides (one of {divisors}) or an image_size "
                                  f"divisible by {patch}")
        tokens = (height // patch) * (width // patch)
        body = ViTBody(channels, tokens, patch, dim, depth, num_heads, mlp_ratio, drop_path)
        super().__init__(meta, body, dim, pretrained)
