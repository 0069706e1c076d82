"""Storage backends that hold prepared samples in a float dtype.

Preparation works in chunks: each chunk of uint8 samples is converted to float32, run
through the prepare-stage transforms and written into a preallocated tensor of the
backend's dtype, so the whole dataset never exists twice in float32.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from core import Batch, Split, Step, StorageBackend


class CastStorage(StorageBackend):
    torch_dtype: ClassVar[torch.dtype]

    def __init__(self, chunk_size: int = 4096) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
        self.chunk_size = chunk_size

    def materialise(self, split: Split, prepare: list[Step]) -> dict[str, torch.Tensor]:
        stim = split.fields["stim"]
        shape = tuple(stim.shape[1:])
        for step in prepare:
            shape = step.transform.output_shape(shape)
        out = torch.empty((len(stim), *shape), dtype=self.torch_dtype)
        for start in range(0, len(stim), self.chunk_size):
            chunk: Batch = {"stim": torch.from_numpy(np.asarray(stim[start : start + self.chunk_size])).float()}
            for step in prepare:
                chunk = step.transform(chunk)
            out[start : start + len(chunk["stim"])] = chunk["stim"]
        rest = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in split.fields.items() if key != "stim"}
        return {"stim": out, **rest}

    def finish(self, batch: Batch) -> Batch:
        return batch


class Float32Storage(CastStorage):
    dtype_name = "float32"
    torch_dtype = torch.float32
