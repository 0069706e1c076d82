"""What a .beton file holds, read from its header with FFCV's ``Reader`` (no samples decoded).

Checks what FFCV itself would only trip over later: a missing file, a file that is not a
.beton, and a truncated one (its allocation table points past the end of the file).
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
    if len(reader.metadata) != reader.num_samples or not len(table):
        raise DataError(f"{path}: truncated: the header promises {reader.num_samples} samples, the file ends early ({size} bytes)")
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
        elif isinstance(handler, NDArrayField):
            kinds[name] = "ndarray"
            beton.ndarray_shapes[name] = tuple(handler.shape)
        else:
            kinds[name] = type(handler).__name__
    return beton


def read_sidecar(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / SIDECAR
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON: {exc}") from None
