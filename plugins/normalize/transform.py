"""Per-channel normalisation on the device: ``(x / scale - mean) / std``.

``mean`` and ``std`` are in 0..1 pixel units, one value per channel (torchvision's
convention: ImageNet's mean is ``[0.485, 0.456, 0.406]``); ``scale`` is the value of a
full-intensity input (255 for uint8 pixels). ``auto`` learns both in one pass over the
training split's stored samples (:mod:`core.fitting` keeps them in ``<run>/learned.json``).
The map is affine, ``x * weight + bias``: one ``addcmul`` per batch, which the ``uint8``
storage folds into its finish (the cast and the normalisation in one op) when ``normalize``
is the first device-stage transform.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

import torch

from core import DEVICE, Batch, DataError, Layout, Transform

Auto = Literal["auto"]


class Normalize(Transform):
    stages = frozenset({DEVICE})

    def __init__(self, mean: list[float] | Auto = "auto", std: list[float] | Auto = "auto", scale: float = 255.0) -> None:
        """``mean``: per channel, in 0..1 pixel units, or ``auto`` (learned from the training split).
        ``std``: per channel, above 0, or ``auto`` (with ``mean: auto``). ``scale``: the input value
        of a full-intensity pixel (255 for uint8 pixels, 1 for data already in 0..1)."""
        if (mean == "auto") != (std == "auto"):
            raise ValueError("give mean and std both as lists (one value per channel) or both as auto")
        if mean != "auto":
            if not mean or len(mean) != len(std):
                raise ValueError(f"mean has {len(mean)} values and std {len(std)}: give one of each per channel")
            if not all(math.isfinite(v) for v in [*mean, *std]) or min(std) <= 0:
                raise ValueError(f"std must be finite and above 0, mean finite (mean {mean}, std {std})")
        if not scale > 0:
            raise ValueError(f"scale must be above 0, not {scale}")
        self.learns = mean == "auto"
        self.mean = None if self.learns else [float(v) for v in mean]
        self.std = None if self.learns else [float(v) for v in std]
        self.scale = float(scale)
        self.channels: int | None = None  # of the stim, from output_layout
        self.after_channel = 2  # axes after C (CHW: H and W)
        self.fused = False
        self.learned: dict[str, Any] | None = None  # the state fit() returned, once it read the split
        self._affine: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def output_layout(self, layout: Layout) -> Layout:
        if "C" not in layout.axes:
            raise ValueError(f"normalize works per channel, but the stim's axes {layout.axes} have no channel axis C")
        at = layout.axes.index("C")
        self.channels, self.after_channel = layout.shape[at], len(layout.axes) - at - 1
        if self.mean is not None and len(self.mean) != self.channels:
            raise ValueError(f"mean and std have {len(self.mean)} values, but the stim has {self.channels} channel(s) "
                             f"(layout {layout.axes} {layout.shape}): give one value per channel")
        return layout

    def fit(self, stim: Iterable[torch.Tensor], saved: dict[str, Any] | None) -> dict[str, Any]:
        """Per-channel mean and std of the stored samples over pixels (and time), in 0..1 units."""
        if self._reusable(saved):
            self._set(saved["mean"], saved["std"])
            return saved
        if self.learned is not None:  # learned earlier in this process (a run without a run directory)
            return self.learned
        total = squares = None
        count = 0
        for chunk in stim:
            dims = [d for d in range(chunk.ndim) if d != chunk.ndim - 1 - self.after_channel]
            values = chunk.to(torch.float64)
            total = values.sum(dims) if total is None else total + values.sum(dims)
            squares = values.square().sum(dims) if squares is None else squares + values.square().sum(dims)
            count += chunk.numel() // chunk.shape[chunk.ndim - 1 - self.after_channel]
        if not count:
            raise DataError("normalize: the training split holds no sample to learn mean and std from; give them as lists")
        mean = total / count / self.scale
        std = (squares / count / self.scale**2 - mean.square()).clamp_min(0).sqrt()
        flat = [c for c, s in enumerate(std.tolist()) if not s > 0]
        if flat:
            raise DataError(f"normalize: channel(s) {flat} of the training split are constant (std 0), so auto cannot "
                            "divide by their std; give mean and std as lists")
        self._set(mean.tolist(), std.tolist())
        self.learned = {"mean": self.mean, "std": self.std, "scale": self.scale, "values_per_channel": count}
        return self.learned

    def _reusable(self, saved: dict[str, Any] | None) -> bool:
        return (isinstance(saved, dict) and saved.get("scale") == self.scale and isinstance(saved.get("mean"), list)
                and len(saved["mean"]) == len(saved.get("std", [])) == (self.channels or len(saved["mean"])))

    def _set(self, mean: list[float], std: list[float]) -> None:
        self.mean, self.std = [float(v) for v in mean], [float(v) for v in std]
        self._affine = {}

    def fuse(self) -> None:
        """A storage applies :meth:`affine` in its finish: ``__call__`` then passes ``stim`` through."""
        self.fused = True

    def affine(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight, bias)`` with ``x * weight + bias`` the normalisation, shaped to broadcast over
        a batch's channel axis; made once per dtype and device (no copy per batch)."""
        key = (dtype, device)
        if key not in self._affine:
            if self.mean is None:
                raise RuntimeError("normalize: mean and std are auto and were not learned (the core calls fit when "
                                   "the training split opens)")
            shape = (len(self.mean),) + (1,) * self.after_channel
            mean = torch.tensor(self.mean, dtype=torch.float64).view(shape)
            std = torch.tensor(self.std, dtype=torch.float64).view(shape)
            weight, bias = 1 / (self.scale * std), -mean / std
            self._affine[key] = (weight.to(device=device, dtype=dtype), bias.to(device=device, dtype=dtype))
        return self._affine[key]

    def __call__(self, batch: Batch) -> Batch:
        if self.fused:
            return batch
        stim = batch["stim"]
        weight, bias = self.affine(stim.dtype if stim.is_floating_point() else torch.float32, stim.device)
        return {**batch, "stim": torch.addcmul(bias, stim, weight)}
