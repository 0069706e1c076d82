"""Batched reads from many session files: sorted, merged into spans, through a bounded pool
of handles that each process opens for itself.

A batch's indices are grouped by file and sorted, so each HDF5 chunk a batch touches is
decompressed once (the chunk cache needs to hold one chunk, not the batch). Neighbouring
trials are merged into one slice read when the gap costs less than another call, but never
across a chunk boundary (a slice is served from one cached chunk). h5py handles must not
cross a fork: the pool remembers the process that opened them and starts empty in any
other (a forked DataLoader worker), and pickles without them.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

import h5py
import numpy as np

from core import DataError, DiskSplit
from plugins.hdf5.session import SessionInfo, open_file, unreadable

MERGE_BYTES = 16 * 2**10  # read through a gap smaller than this rather than start another read
CACHE_CHUNKS = 4  # default chunk cache: this many of the file's largest chunks
MIN_CACHE = 2**20  # h5py's default, kept as the floor
MAX_CACHE = 256 * 2**20


def default_cache_bytes(info: SessionInfo) -> int:
    """Compressed chunks: a cache of a few of the file's chunks (h5py's 1 MiB holds none of a
    256-trial chunk of 64x64 frames, and then each trial read decompresses its chunk again).
    Uncompressed: none. Reads go straight to the bytes they need, as fast as through a cache
    (benchmarks/sessions_io.py), and every open file would otherwise hold its cache."""
    if not info.compressed:
        return 0
    return int(min(MAX_CACHE, max(MIN_CACHE, CACHE_CHUNKS * info.chunk_bytes)))


class HandlePool:
    """At most ``max_open`` open files per process, least recently used closed first."""

    def __init__(self, max_open: int, cache_bytes: int | None) -> None:
        self.max_open, self.cache_bytes = max_open, cache_bytes
        self._files: OrderedDict[str, h5py.File] = OrderedDict()
        self._datasets: dict[str, dict[str, h5py.Dataset]] = {}
        self._pid = os.getpid()
        self.opened = 0  # files opened by this process (for tests and the benchmark)

    def get(self, info: SessionInfo) -> h5py.File:
        if self._pid != os.getpid():  # a forked worker: the parent's handles are not ours to use
            self._files, self._datasets = OrderedDict(), {}
            self._pid, self.opened = os.getpid(), 0
        handle = self._files.get(info.path)
        if handle is not None:
            self._files.move_to_end(info.path)
            return handle
        while len(self._files) >= self.max_open:
            path, closing = self._files.popitem(last=False)
            self._datasets.pop(path, None)
            closing.close()
        cache = self.cache_bytes if self.cache_bytes is not None else default_cache_bytes(info)
        handle = self._files[info.path] = open_file(info.path, rdcc_nbytes=cache, rdcc_nslots=_slots(cache, info))
        self.opened += 1
        return handle

    def dataset(self, info: SessionInfo, name: str) -> h5py.Dataset:
        """A dataset of an open file, kept with it: its chunk cache lives as long as the object."""
        handle = self.get(info)
        kept = self._datasets.setdefault(info.path, {})
        if name not in kept:
            kept[name] = handle[info.datasets[name]]
        return kept[name]

    def close(self) -> None:
        """Close every file this process opened (the next read opens it again)."""
        if self._pid == os.getpid():
            for handle in self._files.values():
                handle.close()
        self._files, self._datasets = OrderedDict(), {}

    def open_count(self) -> int:
        return len(self._files) if self._pid == os.getpid() else 0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_files": OrderedDict(), "_datasets": {}, "_pid": None}


def _slots(cache: int, info: SessionInfo) -> int:
    """Hash slots: about 100 per chunk the cache can hold (HDF5's advice), a prime-ish odd number."""
    chunks = max(1, cache // max(1, info.chunk_bytes or cache))
    return 100 * chunks + 1 if chunks > 1 else 521


def spans(rows: np.ndarray, merge_rows: int, chunk_rows: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(starts, stops) of the slices that cover sorted unique ``rows``: neighbours closer than
    ``merge_rows`` share a slice, unless a chunk boundary lies between them."""
    if len(rows) == 0:
        return rows, rows
    gap = np.diff(rows) - 1
    split = gap > merge_rows
    if chunk_rows:
        split |= rows[1:] // chunk_rows != rows[:-1] // chunk_rows
    first = np.flatnonzero(np.concatenate([[True], split]))
    last = np.concatenate([first[1:] - 1, [len(rows) - 1]])
    return rows[first], rows[last] + 1


class SessionRows(DiskSplit):
    """One split of several sessions: split index ``i`` is trial ``rows[i]`` of file ``files[i]``.

    ``keys`` maps each file dataset read to its key in a batch (``label`` becomes the head's name).
    """

    def __init__(self, sessions: list[SessionInfo], files: np.ndarray, rows: np.ndarray, keys: dict[str, str],
                 pool: HandlePool) -> None:
        self.sessions, self.files, self.rows, self.keys, self.pool = sessions, files, rows, keys, pool

    def __len__(self) -> int:
        return len(self.rows)

    def read(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return self.read_fields(indices, list(self.keys))

    def column(self, name: str) -> np.ndarray:
        field = next(f for f, key in self.keys.items() if key == name)
        return self.read_fields(np.arange(len(self)), [field])[name]

    def read_fields(self, indices: np.ndarray, fields: list[str]) -> dict[str, np.ndarray]:
        """Datasets ``fields`` at ``indices``, keyed as in a batch."""
        indices = np.asarray(indices, dtype=np.int64)
        files, rows = self.files[indices], self.rows[indices]
        first = self.sessions[0]
        out = {name: np.empty((len(indices), *first.sample_shapes[name]), dtype=_dtype(first, name)) for name in fields}
        for file in np.unique(files):
            where = np.flatnonzero(files == file)
            wanted, position = np.unique(rows[where], return_inverse=True)
            info = self.sessions[file]
            for name in fields:
                out[name][where] = self._read_rows(self.pool.dataset(info, name), info, name, wanted)[position]
        return {self.keys[name]: value for name, value in out.items()}

    @staticmethod
    def _read_rows(data: h5py.Dataset, info: SessionInfo, name: str, wanted: np.ndarray) -> np.ndarray:
        row_bytes = max(1, int(np.prod(data.shape[1:])) * data.dtype.itemsize)
        starts, stops = spans(wanted, MERGE_BYTES // row_bytes, info.chunk_rows[name])
        block = np.concatenate([_read(data, info, name, a, b) for a, b in zip(starts.tolist(), stops.tolist())]) \
            if len(starts) > 1 else _read(data, info, name, int(starts[0]), int(stops[0]))
        offsets = np.cumsum(np.concatenate([[0], stops[:-1] - starts[:-1]]))
        span = np.searchsorted(starts, wanted, side="right") - 1
        return block[offsets[span] + wanted - starts[span]].reshape(len(wanted), *info.sample_shapes[name])


def _read(data: h5py.Dataset, info: SessionInfo, name: str, start: int, stop: int) -> np.ndarray:
    """Trials ``start`` to ``stop`` of a dataset; a damaged chunk (h5py's OSError, which names
    no file) becomes a DataError naming the file, the dataset and the trials."""
    try:
        return data[start:stop]
    except (OSError, RuntimeError) as exc:
        raise DataError(unreadable(info.path, name, start, stop, exc)) from None


class Rows:
    """One field of a :class:`SessionRows` as a sliceable array (what preparation reads in chunks)."""

    def __init__(self, split: SessionRows, name: str) -> None:
        self.split, self.name, self.key = split, name, split.keys[name]
        self.shape = (len(split), *split.sessions[0].sample_shapes[name])
        self.dtype = np.dtype(_dtype(split.sessions[0], name))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, window: slice) -> np.ndarray:
        return self.split.read_fields(np.arange(*window.indices(len(self))), [self.name])[self.key]


def _dtype(info: SessionInfo, name: str) -> str:
    """A field's dtype in a batch: stim as stored, float responses and contrast as float32."""
    return {"stim": info.stim_dtype, "responses": "float32", "contrast": "float32", "label": "int64"}[name]
