"""Storage backends that run the prepare-stage transforms once and hold the result as floats.

Transforms up to the first device-only one run at preparation on the CPU, in the listed
order, chunk by chunk; each chunk is cast to the backend's dtype as it is written
(:class:`core.materialise.ChunkedStorage`). On the device a batch is cast to the model's dtype.
"""

from __future__ import annotations

import torch

from core.materialise import ChunkedStorage


class Float32Storage(ChunkedStorage):
    dtype_name = "float32"
    bytes_per_value = 4
    torch_dtype = torch.float32


class BFloat16Storage(ChunkedStorage):
    dtype_name = "bfloat16"
    bytes_per_value = 2
    torch_dtype = torch.bfloat16
