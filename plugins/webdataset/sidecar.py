"""``dataset_info.json``: what a shard folder written by ``core-data convert --to webdataset``
holds, so that ``meta()`` (run by ``--dry-run``) reads one small file instead of a shard.

    {"dataset_name": "digits", "stim_shape": [1, 8, 8], "stim_axes": "CHW", "stim_dtype": "uint8",
     "heads": {"digit": 10}, "head_keys": {"digit": "cls"},
     "fields": {"responses": [[100], "float32"], "contrast": [[], "float32"]},
     "split_sizes": {"train": 1258, "val": 180, "test": 359},
     "shards": {"train": {"train-000000.tar": 200, ...}, "val": {...}, "test": {...}}}

``stim_shape``/``stim_axes`` describe one stored ``stim.npy`` (``HW``, ``CHW``, ``THW`` or
``TCHW``); ``head_keys`` names the tar member holding each head's label (the first head is
``cls``, others ``<head>.cls``); ``shards`` lists each split's shard files in order with
their sample counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import SPLITS, DataError
from core.files import write_atomic

SIDECAR = "dataset_info.json"


@dataclass(frozen=True)
class Sidecar:
    dataset_name: str
    stim_shape: tuple[int, ...]
    stim_axes: str
    stim_dtype: str
    heads: dict[str, int]
    head_keys: dict[str, str]
    fields: dict[str, tuple[tuple[int, ...], str]]
    shards: dict[str, dict[str, int]]

    @property
    def split_sizes(self) -> dict[str, int]:
        return {split: sum(counts.values()) for split, counts in self.shards.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset_name": self.dataset_name, "stim_shape": list(self.stim_shape), "stim_axes": self.stim_axes,
            "stim_dtype": self.stim_dtype, "heads": self.heads, "head_keys": self.head_keys,
            "fields": {name: [list(shape), dtype] for name, (shape, dtype) in self.fields.items()},
            "split_sizes": self.split_sizes, "shards": self.shards,
        }


def write_sidecar(folder: Path, sidecar: Sidecar) -> None:
    write_atomic(Path(folder) / SIDECAR, json.dumps(sidecar.to_json(), indent=2) + "\n")


def read_sidecar(folder: Path) -> Sidecar | None:
    """The folder's sidecar, or None when it has none; a malformed one is a DataError naming
    the file and the key."""
    path = Path(folder) / SIDECAR
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON: {exc}") from None
    try:
        return Sidecar(
            dataset_name=str(raw["dataset_name"]),
            stim_shape=tuple(int(n) for n in raw["stim_shape"]),
            stim_axes=str(raw["stim_axes"]),
            stim_dtype=str(raw.get("stim_dtype", "uint8")),
            heads={str(h): int(n) for h, n in raw["heads"].items()},
            head_keys={str(h): str(k) for h, k in raw["head_keys"].items()},
            fields={str(name): (tuple(int(n) for n in shape), str(dtype)) for name, (shape, dtype) in raw["fields"].items()},
            shards={split: {str(name): int(n) for name, n in raw["shards"].get(split, {}).items()} for split in SPLITS},
        )
    except KeyError as exc:
        raise DataError(f"{path}: no key {exc}; rewrite it with core-data convert --to webdataset") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{path}: malformed ({type(exc).__name__}: {exc}); "
                        "rewrite it with core-data convert --to webdataset") from None
