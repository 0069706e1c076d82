"""uint8 storage: the smallest in-RAM form of image data, finished on the device.

Pixels are held as read (uint8: a quarter of float32), a batch crosses to the device as
uint8 and is cast there to the model's dtype; ``pixelnorm`` then runs on the device as a
device-stage transform. Since raw pixels are kept, a transform that runs only at
preparation (``fftwhitening``, ``temporal_basis``) cannot be applied: the plan refuses it.
"""

from __future__ import annotations

import numpy as np
import torch

from core import DEVICE, ConfigError, DataError, Split, Step
from core.materialise import ChunkedStorage


class Uint8Storage(ChunkedStorage):
    dtype_name = "uint8"
    bytes_per_value = 1
    torch_dtype = torch.uint8

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
        return [], list(steps)

    def materialise(self, split: Split, prepare: list[Step]) -> dict[str, torch.Tensor]:
        dtype = split.fields["stim"].dtype
        if dtype != np.uint8:  # casting floats to uint8 would silently destroy them
            raise DataError(f"storage 'uint8' holds raw uint8 pixels, but the dataset's stim is {dtype}; "
                            "use data.storage: bfloat16 or float32")
        return super().materialise(split, prepare)
