"""uint8 storage: the smallest in-RAM form of image data, finished on the device.

Pixels are held as read (uint8: a quarter of float32), a batch crosses to the device as
uint8 and is cast there to the model's dtype; ``pixelnorm`` then runs on the device as a
device-stage transform. Since raw pixels are kept, a transform that runs only at
preparation (``fftwhitening``, ``temporal_basis``) cannot be applied: the plan refuses it.

When the first device-stage transform is an affine map that offers ``affine(dtype, device)``
and ``fuse()`` (``normalize``), the finish applies it with the cast, in one op on the
device (``addcmul(bias, x_uint8, weight)``: no float copy of the raw batch), and the
transform then passes ``stim`` through.
"""

from __future__ import annotations

from typing import Any

import torch

from core import DEVICE, Batch, ConfigError, DataError, Split, Step
from core.materialise import ChunkedStorage


class Uint8Storage(ChunkedStorage):
    dtype_name = "uint8"
    bytes_per_value = 1
    torch_dtype = torch.uint8
    fused: Any = None  # the device-stage transform the finish applies (see the module's doc)

    def plan(self, steps: list[Step], dataset: str) -> tuple[list[Step], list[Step]]:
        for step in steps:
            if DEVICE not in self.check_stages(step):
                raise ConfigError(
                    step.path,
                    f"dataset '{dataset}' has transform '{step.name}', which runs only at preparation, but "
                    "storage 'uint8' keeps raw pixels and supports only transforms that run on the device "
                    "(such as pixelnorm)",
                    fix=f"use data.storage: bfloat16 (2x the memory of uint8) or float32 (4x) to apply '{step.name}'",
                )
        first = steps[0].transform if steps else None
        fusable = callable(getattr(first, "affine", None)) and callable(getattr(first, "fuse", None))
        self.fused = first if fusable else None
        if fusable:
            first.fuse()
        return [], list(steps)

    def check_stim(self, dtype: str) -> None:
        if dtype != "uint8":  # casting floats to uint8 would silently destroy them
            raise ValueError(f"storage 'uint8' holds raw uint8 pixels, but the dataset's stim is {dtype}")

    def finish(self, batch: Batch, dtype: torch.dtype) -> Batch:
        if self.fused is None:
            return super().finish(batch, dtype)
        weight, bias = self.fused.affine(dtype, batch["stim"].device)
        return {**batch, "stim": torch.addcmul(bias, batch["stim"], weight)}

    def materialise(self, split: Split, prepare: list[Step]) -> dict[str, torch.Tensor]:
        try:  # the resolver checks the format's stim_dtype; this catches a format whose arrays differ from it
            self.check_stim(str(split.fields["stim"].dtype))
        except ValueError as exc:
            raise DataError(f"{exc}; use data.storage: bfloat16 or float32") from None
        return super().materialise(split, prepare)
