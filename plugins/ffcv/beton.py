"""What a .beton file holds, read from its header with FFCV's ``Reader`` (no samples decoded).

Checks what FFCV itself would only trip over later: a missing file, a file that is not a
.beton, and a truncated one. A .beton ends with its allocation table (one entry per sample
and allocating field: sample id, pointer, size), which FFCV reads to the end of the file,
whole entries only: a file cut by a few bytes loses the last entries without a word, and
FFCV then reads the last samples from wherever its lookup lands. So the file's length must
be exactly where the table ends, and the table must locate every sample.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core import DataError

SIDECAR = "ffcv_dataset_info.json"


@dataclass
class Beton:
    path: Path
    num_samples: int
    fields: dict[str, str]  # name -> "image" | "int" | "float" | "ndarray" | other FFCV field class name
    image_shape: tuple[int, int, int] | None
    int_values: dict[str, np.ndarray] = field(default_factory=dict)
    ndarray_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    float_values: dict[str, np.ndarray] = field(default_factory=dict)
    ndarray_data: dict[str, tuple[np.ndarray, np.dtype]] = field(default_factory=dict)  # per-sample pointers, dtype

    def ndarray_values(self, name: str, rows: slice) -> np.ndarray:
        """Samples ``rows`` of the NDArray field ``name``, read from the file (validate's checks)."""
        ptrs, dtype = self.ndarray_data[name]
        shape = self.ndarray_shapes[name]
        size = int(np.prod(shape)) * dtype.itemsize
        raw = np.memmap(self.path, dtype=np.uint8, mode="r")
        chosen = ptrs[rows].astype(np.int64)
        if len(chosen) and (chosen.min() < 0 or chosen.max() + size > len(raw)):
            raise DataError(f"{self.path}: corrupt: field '{name}' points past the end of the file; rewrite it with "
                            "core-data convert --to ffcv")
        return raw[chosen[:, None] + np.arange(size)].view(dtype).reshape(len(chosen), *shape)


def read_beton(path: Path) -> Beton:
    from ffcv.fields import FloatField, IntField, NDArrayField, RGBImageField
    from ffcv.reader import Reader

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such .beton file")
    try:
        reader = Reader(str(path))
    except Exception as exc:  # FFCV raises AssertionError, ValueError, IndexError... on bad headers
        raise DataError(f"{path}: not a readable .beton ({type(exc).__name__}: {exc})") from None
    size = path.stat().st_size
    table = reader.alloc_table
    if reader.num_samples == 0:
        raise DataError(f"{path}: holds no sample; a run needs at least one sample in each split's .beton")
    if len(reader.metadata) != reader.num_samples or not len(table):
        raise DataError(f"{path}: truncated: the header promises {reader.num_samples} samples, the file ends early ({size} bytes)")
    problem = table_problem(path, size, int(reader.header["alloc_table_ptr"]), table, int(reader.num_samples))
    if problem:
        raise DataError(problem)
    end = int((table["ptr"] + table["size"]).max())
    if end > size:
        raise DataError(f"{path}: truncated: sample data runs to byte {end}, the file has {size} bytes")
    kinds: dict[str, str] = {}
    beton = Beton(path, int(reader.num_samples), kinds, None)
    for index, (name, handler) in enumerate(reader.handlers.items()):
        column = f"f{index}"  # FFCV's metadata table names its columns by field position
        if isinstance(handler, RGBImageField):
            kinds[name] = "image"
            heights, widths = reader.metadata[column]["height"], reader.metadata[column]["width"]
            if len(set(heights.tolist())) > 1 or len(set(widths.tolist())) > 1:
                raise DataError(f"{path}: field '{name}' holds images of several sizes; write them at one size")
            beton.image_shape = (3, int(heights[0]), int(widths[0])) if len(heights) else (3, 0, 0)
        elif isinstance(handler, IntField):
            kinds[name] = "int"
            beton.int_values[name] = np.asarray(reader.metadata[column])
        elif isinstance(handler, FloatField):
            kinds[name] = "float"
            beton.float_values[name] = np.asarray(reader.metadata[column])
        elif isinstance(handler, NDArrayField):
            kinds[name] = "ndarray"
            beton.ndarray_shapes[name] = tuple(handler.shape)
            beton.ndarray_data[name] = (np.asarray(reader.metadata[column]), np.dtype(handler.dtype))
        else:
            kinds[name] = type(handler).__name__
    return beton


def table_problem(path: Path, size: int, table_start: int, table: np.ndarray, num_samples: int) -> str | None:
    """Why a .beton of ``size`` bytes whose allocation table starts at ``table_start`` and reads
    as ``table`` (whole entries, as FFCV reads it) is truncated or corrupt; None if it is not."""
    fix = "the file is truncated (or still being copied): copy it again or rewrite it with core-data convert --to ffcv"
    entry = table.dtype.itemsize
    if size < table_start:
        return (f"{path}: truncated: its allocation table should start at byte {table_start}, but the file has {size} "
                f"bytes; {fix}")
    cut = (size - table_start) % entry
    if cut:
        return (f"{path}: truncated: the file ends inside entry {len(table)} of its allocation table ({cut} of its "
                f"{entry} bytes), {size} bytes in all; {fix}")
    ids = np.asarray(table["sample_id"], dtype=np.uint64)
    if len(ids) and int(ids.max()) >= num_samples:
        return (f"{path}: corrupt: its allocation table names sample {int(ids.max())}, but the header holds "
                f"{num_samples} samples; rewrite it with core-data convert --to ffcv")
    counts = np.bincount(ids.astype(np.int64), minlength=num_samples)
    if len(counts) and counts.min() != counts.max():
        short = np.flatnonzero(counts < counts.max())
        return (f"{path}: truncated: its allocation table locates the data of {num_samples - len(short)} of "
                f"{num_samples} samples (sample {int(short[0])} has {int(counts[short[0]])} of its "
                f"{int(counts.max())} entries), {size} bytes in all; {fix}")
    return None


def read_sidecar(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / SIDECAR
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON: {exc}") from None
