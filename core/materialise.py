"""Chunked preparation: read, transform and store a split a chunk at a time.

Storage backends share this loop. Each chunk of raw samples is read from the format's
array (an in-memory array, a memory map or an HDF5 dataset: anything sliceable), turned
into float32 only if prepare-stage transforms run, transformed, and written into a tensor
of the final dtype allocated once. The whole dataset never exists in float32: the peak is
the stored size plus the transforms' working memory for one chunk (a few chunk-sized
float32 intermediates: an FFT keeps about five alive), which is why chunks are sized in
bytes (``CHUNK_BYTES`` of float32 per chunk by default), not in samples.
"""

from __future__ import annotations

import ctypes
from typing import ClassVar

import numpy as np
import torch

from core.kinds import Batch, Split, Step, StorageBackend

CHUNK_BYTES = 8 * 2**20


def chunk_samples(sample_shape: tuple[int, ...], chunk_size: int | None) -> int:
    """Samples per chunk: ``chunk_size`` if given, else as many as fill ``CHUNK_BYTES`` as float32."""
    if chunk_size is not None:
        return chunk_size
    values = int(np.prod(sample_shape)) if sample_shape else 1
    return max(1, CHUNK_BYTES // (4 * max(values, 1)))


def materialise_chunked(split: Split, prepare: list[Step], dtype: torch.dtype, chunk_size: int | None) -> dict[str, torch.Tensor]:
    """``split`` as tensors: ``stim`` in ``dtype`` after ``prepare``; other fields as they are."""
    stim = split.fields["stim"]
    rest = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in split.fields.items() if key != "stim"}
    step = chunk_samples(tuple(stim.shape[1:]), chunk_size)
    if not prepare and np.dtype(stim.dtype) == _numpy_dtype(dtype):
        if isinstance(stim, np.ndarray):
            return {"stim": torch.from_numpy(np.ascontiguousarray(stim)), **rest}  # already what we store: no copy
        out = torch.empty(tuple(stim.shape), dtype=dtype)
        target = out.numpy()
        for start in range(0, len(stim), step):
            window = np.s_[start : start + step]
            if hasattr(stim, "read_direct"):  # HDF5: read straight into the stored tensor, no chunk buffer
                stim.read_direct(target, source_sel=window, dest_sel=window)
            else:
                target[window] = stim[window]
        return {"stim": out, **rest}
    out: torch.Tensor | None = None
    for start in range(0, len(stim), step):
        chunk = torch.from_numpy(np.ascontiguousarray(stim[start : start + step]))
        if prepare:
            batch: Batch = {"stim": chunk.float()}
            for prepare_step in prepare:
                batch = prepare_step.transform(batch)
            chunk = batch.pop("stim")
        if out is None:
            out = torch.empty((len(stim), *chunk.shape[1:]), dtype=dtype)
        out[start : start + len(chunk)] = chunk
        del chunk  # free this chunk's float32 before the next one is read
        if prepare:
            _return_freed_memory()
    if out is None:  # an empty split
        out = torch.empty((0, *stim.shape[1:]), dtype=dtype)
    return {"stim": out, **rest}


def _return_freed_memory() -> None:
    """Hand freed heap memory back to the OS (glibc keeps chunk-sized blocks below its mmap
    threshold otherwise, and resident memory would grow by several chunks)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 (glibc only)
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _load_libc()


def _numpy_dtype(dtype: torch.dtype) -> np.dtype | None:
    try:
        return torch.empty((), dtype=dtype).numpy().dtype
    except TypeError:  # bfloat16 has no NumPy twin
        return None


class ChunkedStorage(StorageBackend):
    """A storage backend that holds ``stim`` as ``torch_dtype``, prepared chunk by chunk,
    and casts each batch to the model's dtype on the device. Subclasses set the dtype."""

    torch_dtype: ClassVar[torch.dtype]

    def __init__(self, chunk_size: int | None = None) -> None:
        """``chunk_size``: samples prepared at a time (default: 8 MiB of float32 per chunk)."""
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
        self.chunk_size = chunk_size

    def materialise(self, split: Split, prepare: list[Step]) -> dict[str, torch.Tensor]:
        return materialise_chunked(split, prepare, self.torch_dtype, self.chunk_size)

    def finish(self, batch: Batch, dtype: torch.dtype) -> Batch:
        return {**batch, "stim": batch["stim"].to(dtype)}
