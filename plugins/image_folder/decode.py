"""Decodes image files to uint8 (C, H, W) arrays with Pillow, in a pool of processes.

Each image is resized so its shorter side is ``size`` (bilinear, antialiased) and its centre
``size`` x ``size`` square is kept, torchvision's ``Resize(size)`` + ``CenterCrop(size)``
in one resampling of the central square. JPEGs are decoded at a reduced scale first when
they are at least twice ``size`` (Pillow's ``draft``: the DCT skips detail the resize
would average away). Workers write straight into a ``.npy`` memory map; only the indices
and reasons of unreadable files travel back.

This module imports only NumPy and Pillow, so worker processes start quickly.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

CHUNK_FILES = 256  # images per task: large enough to amortise a task, small enough to balance the workers


def decode(path: Path, size: int, channels: int) -> np.ndarray:
    """One image file as uint8 ``(channels, size, size)``; Pillow's errors propagate."""
    from PIL import Image

    mode = "RGB" if channels == 3 else "L"
    with Image.open(path) as image:
        image.draft(mode, (size, size))
        image = image.convert(mode)
        width, height = image.size
        side = min(width, height)
        if (width, height) != (size, size):
            left, top = (width - side) / 2, (height - side) / 2
            image = image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))
        pixels = np.asarray(image, dtype=np.uint8)
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def decode_into(out: Path, paths: list[str], start: int, size: int, channels: int) -> list[tuple[int, str]]:
    """Decode ``paths`` into rows ``start...`` of the ``.npy`` file ``out``; return the
    ``(row, reason)`` of every file that could not be decoded."""
    rows = np.load(out, mmap_mode="r+")
    bad = []
    for offset, path in enumerate(paths):
        try:
            rows[start + offset] = decode(Path(path), size, channels)
        except Exception as exc:  # Pillow raises many kinds (OSError, SyntaxError, ValueError, DecompressionBomb...)
            bad.append((start + offset, f"{type(exc).__name__}: {exc}"))
    rows.flush()
    return bad


def decode_all(paths: list[str], out: Path, size: int, channels: int, workers: int) -> list[tuple[int, str]]:
    """Decode every path into a new ``.npy`` file ``out`` of shape ``(n, channels, size, size)``
    with up to ``workers`` processes (0: in this process); return the unreadable rows."""
    np.lib.format.open_memmap(out, mode="w+", dtype=np.uint8, shape=(len(paths), channels, size, size)).flush()
    starts = range(0, len(paths), CHUNK_FILES)
    processes = min(workers, len(starts))
    if processes <= 1:
        return [b for start in starts for b in decode_into(out, paths[start : start + CHUNK_FILES], start, size, channels)]
    with ProcessPoolExecutor(processes) as pool:
        tasks = [pool.submit(decode_into, out, paths[start : start + CHUNK_FILES], start, size, channels) for start in starts]
        return [b for task in tasks for b in task.result()]


def default_workers() -> int:
    """The CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
