"""Reads IDX files (MNIST's format), plain or gzip-compressed (told apart by content).

An IDX file starts with a 4-byte magic number: two zero bytes, a type code (``0x08``:
unsigned bytes) and the number of dimensions; then one big-endian int32 per dimension;
then the values, row-major. MNIST's images have magic 2051 (``0x00000803``: n x rows x
cols) and its labels 2049 (``0x00000801``: n). A wrong magic, a short header or values
that do not fill the header's shape exactly are DataErrors naming the file.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from core import DataError

IMAGES, LABELS = 0x00000803, 0x00000801
KINDS = {IMAGES: "images (unsigned bytes, 3 dimensions)", LABELS: "labels (unsigned bytes, 1 dimension)"}
FIX = "download it again (delete it and set download: true)"


def read_header(path: Path, magic: int) -> tuple[int, ...]:
    """The dimensions in the header of ``path``; only the header is read (for ``meta()``)."""
    ndim = magic & 0xFF
    head = _read(path, 4 + 4 * ndim)
    return _dims(path, head, magic)


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The whole file as a (writable) uint8 array of the header's shape."""
    raw = _read(path, None)
    dims = _dims(path, raw, magic)
    offset = 4 + 4 * len(dims)
    expected = int(np.prod(dims))
    if len(raw) - offset != expected:
        state = "truncated" if len(raw) - offset < expected else "longer than its header says"
        raise DataError(f"{path}: {state}: {len(raw) - offset} bytes of values, but the header's shape "
                        f"{' x '.join(map(str, dims))} needs {expected}; {FIX}")
    return np.frombuffer(bytearray(raw), dtype=np.uint8, offset=offset).reshape(dims)  # writable, as torch wants


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _read(path: Path, size: int | None) -> bytes:
    """``size`` bytes (None: all) of the file's content, decompressed if it is gzip."""
    try:
        if is_gzip(path):
            with gzip.open(path, "rb") as handle:
                return handle.read(-1 if size is None else size)
        with open(path, "rb") as handle:
            return handle.read(-1 if size is None else size)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: a damaged or truncated gzip file ({exc}); {FIX}") from None


def _dims(path: Path, head: bytes, magic: int) -> tuple[int, ...]:
    if len(head) < 4:
        raise DataError(f"{path}: {len(head)} bytes, too short for an IDX header; {FIX}")
    found = int.from_bytes(head[:4], "big")
    if found != magic:
        raise DataError(f"{path}: magic number {found:#010x} ({found}), expected {magic:#010x} ({magic}) for IDX "
                        f"{KINDS[magic]}; is this the right file? (images and labels swapped, or not an IDX file)")
    ndim = magic & 0xFF
    if len(head) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated in its header ({len(head)} of {4 + 4 * ndim} bytes); {FIX}")
    return tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))


def encode_idx(values: np.ndarray) -> bytes:
    """``values`` (uint8) as the bytes of an IDX file."""
    values = np.ascontiguousarray(values, dtype=np.uint8)
    return bytes([0, 0, 0x08, values.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in values.shape) + values.tobytes()


def write_idx(path: Path, values: np.ndarray) -> None:
    """``values`` (uint8) as an IDX file, gzip-compressed when ``path`` ends in ``.gz``."""
    data = encode_idx(values)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
