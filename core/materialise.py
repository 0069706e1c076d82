"""Chunked preparation: read, transform and store a split a chunk at a time.

Storage backends share this loop. Each chunk of raw samples is read from the format's
array (an in-memory array, a memory map or an HDF5 dataset: anything sliceable), turned
into float32 only if prepare-stage transforms run, transformed, and written into a tensor
of the final dtype allocated once. The whole dataset never exists in float32: the peak is
the stored size plus the transforms' working memory for one chunk (a few chunk-sized
float32 intermediates: an FFT keeps about five alive), which is why chunks are sized in
bytes (at most ``CHUNK_BYTES`` of float32, at most a ``CHUNKS_AT_LEAST``-th of the split),
not in samples, and why large allocations are memory-mapped (freed chunks go back to the
OS at once). Under :func:`allocating` the stored ``stim`` is allocated elsewhere (a
shared-memory segment, :mod:`core.shared_memory`), so it is written there directly.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
from collections.abc import Callable, Iterator
from typing import ClassVar

import numpy as np
import torch

from core.kinds import Batch, Split, Step, StorageBackend

CHUNK_BYTES = 64 * 2**20  # float32 per chunk for large datasets: few chunks, little per-chunk overhead
CHUNKS_AT_LEAST = 64  # smaller datasets use smaller chunks, so the transient stays a small share
Allocate = Callable[[tuple[int, ...], torch.dtype], torch.Tensor]
_ALLOCATE: contextvars.ContextVar[Allocate] = contextvars.ContextVar("allocate", default=lambda shape, dtype: torch.empty(shape, dtype=dtype))


@contextlib.contextmanager
def allocating(allocate: Allocate) -> Iterator[None]:
    """Inside, :func:`materialise_chunked` allocates the stored ``stim`` with ``allocate(shape, dtype)``."""
    token = _ALLOCATE.set(allocate)
    try:
        yield
    finally:
        _ALLOCATE.reset(token)


def chunk_samples(n: int, sample_shape: tuple[int, ...], chunk_size: int | None) -> int:
    """Samples per chunk: ``chunk_size`` if given, else ``CHUNK_BYTES`` of float32, or a
    ``CHUNKS_AT_LEAST``-th of the split when that is smaller (at least 1 MiB)."""
    if chunk_size is not None:
        return chunk_size
    sample_bytes = 4 * max(int(np.prod(sample_shape)) if sample_shape else 1, 1)
    target = min(CHUNK_BYTES, max(2**20, n * sample_bytes // CHUNKS_AT_LEAST))
    return max(1, target // sample_bytes)


def materialise_chunked(split: Split, prepare: list[Step], dtype: torch.dtype, chunk_size: int | None) -> dict[str, torch.Tensor]:
    """``split`` as tensors: ``stim`` in ``dtype`` after ``prepare``; other fields as they are."""
    stim = split.fields["stim"]
    rest = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in split.fields.items() if key != "stim"}
    step = chunk_samples(len(stim), tuple(stim.shape[1:]), chunk_size)
    if not prepare and np.dtype(stim.dtype) == _numpy_dtype(dtype):
        if isinstance(stim, np.ndarray):
            return {"stim": torch.from_numpy(np.ascontiguousarray(stim)), **rest}  # already what we store: no copy
        out = _ALLOCATE.get()(tuple(stim.shape), dtype)
        target = out.numpy()
        for start in range(0, len(stim), step):
            window = np.s_[start : start + step]
            if hasattr(stim, "read_direct"):  # HDF5: read straight into the stored tensor, no chunk buffer
                stim.read_direct(target, source_sel=window, dest_sel=window)
            else:
                target[window] = stim[window]
        return {"stim": out, **rest}
    _mmap_threshold(2**20)
    out: torch.Tensor | None = None
    for start in range(0, len(stim), step):
        chunk = torch.from_numpy(np.ascontiguousarray(stim[start : start + step]))
        if prepare:
            batch: Batch = {"stim": chunk.float()}
            for prepare_step in prepare:
                batch = prepare_step.transform(batch)
            chunk = batch.pop("stim")
        if out is None:
            out = _ALLOCATE.get()((len(stim), *chunk.shape[1:]), dtype)
        out[start : start + len(chunk)] = chunk
        del chunk  # free this chunk's float32 before the next one is read
    _mmap_threshold(_MMAP_THRESHOLD_MAX)
    if out is None:  # an empty split
        out = torch.empty((0, *stim.shape[1:]), dtype=dtype)
    return {"stim": out, **rest}


def _mmap_threshold(size: int) -> None:
    """Set glibc's mmap threshold. During preparation it is 1 MiB: chunk-sized buffers are then
    fresh memory maps that go back to the OS when freed (by default the threshold grows after the
    first large free and freed chunks stay in the heap: resident memory would grow by several
    chunks). Afterwards it is glibc's own ceiling, so training's batch tensors reuse heap memory
    instead of paying a map and page faults per allocation."""
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, size)


def _load_libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt  # noqa: B018 (glibc only)
        return libc
    except (OSError, AttributeError):
        return None


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
_MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems
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
        """``chunk_size``: samples prepared at a time (default: sized in bytes, see ``chunk_samples``)."""
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
        self.chunk_size = chunk_size

    def materialise(self, split: Split, prepare: list[Step]) -> dict[str, torch.Tensor]:
        return materialise_chunked(split, prepare, self.torch_dtype, self.chunk_size)

    def finish(self, batch: Batch, dtype: torch.dtype) -> Batch:
        return {**batch, "stim": batch["stim"].to(dtype)}
