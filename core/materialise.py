"""Chunked preparation: read, transform and store a split a chunk at a time.

Storage backends share this loop. Each chunk of raw samples is read from the format's
array (an in-memory array, a memory map or an HDF5 dataset: anything sliceable), turned
into float32 only if prepare-stage transforms run, transformed, and written into a tensor
of the final dtype allocated once. Peak memory is the stored size plus one chunk, never the
whole dataset in float32.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from core.kinds import Batch, Split, Step, StorageBackend


def materialise_chunked(split: Split, prepare: list[Step], dtype: torch.dtype, chunk_size: int) -> dict[str, torch.Tensor]:
    """``split`` as tensors: ``stim`` in ``dtype`` after ``prepare``; other fields as they are."""
    stim = split.fields["stim"]
    rest = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in split.fields.items() if key != "stim"}
    if not prepare and isinstance(stim, np.ndarray) and stim.dtype == _numpy_dtype(dtype):
        return {"stim": torch.from_numpy(np.ascontiguousarray(stim)), **rest}  # already what we store: no copy
    out: torch.Tensor | None = None
    for start in range(0, len(stim), chunk_size):
        chunk = torch.from_numpy(np.ascontiguousarray(stim[start : start + chunk_size]))
        if prepare:
            batch: Batch = {"stim": chunk.float()}
            for step in prepare:
                batch = step.transform(batch)
            chunk = batch["stim"]
        if out is None:
            out = torch.empty((len(stim), *chunk.shape[1:]), dtype=dtype)
        out[start : start + len(chunk)] = chunk
    if out is None:  # an empty split
        out = torch.empty((0, *stim.shape[1:]), dtype=dtype)
    return {"stim": out, **rest}


def _numpy_dtype(dtype: torch.dtype) -> np.dtype | None:
    try:
        return torch.empty((), dtype=dtype).numpy().dtype
    except TypeError:  # bfloat16 has no NumPy twin
        return None


class ChunkedStorage(StorageBackend):
    """A storage backend that holds ``stim`` as ``torch_dtype``, prepared chunk by chunk,
    and casts each batch to the model's dtype on the device. Subclasses set the dtype."""

    torch_dtype: ClassVar[torch.dtype]

    def __init__(self, chunk_size: int = 1024) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
        self.chunk_size = chunk_size

    def materialise(self, split: Split, prepare: list[Step]) -> dict[str, torch.Tensor]:
        return materialise_chunked(split, prepare, self.torch_dtype, self.chunk_size)

    def finish(self, batch: Batch, dtype: torch.dtype) -> Batch:
        return {**batch, "stim": batch["stim"].to(dtype)}
