"""Format ``ffcv``: .beton files streamed through FFCV's own ``Loader`` (compiled pipelines).

``path`` is a folder written by ``core-data convert --to ffcv`` (``train.beton``,
``val.beton``, ``test.beton`` and ``ffcv_dataset_info.json``) or a single .beton for
training, with ``val_path`` and ``test_path`` for evaluation. Images stay uint8 until the
device, where the run's storage backend finishes them; each integer field is a head
(classes from the sidecar, else ``max + 1``); NDArray fields (responses) pass through.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from core import DataError, DataFormat, DatasetMeta
from plugins.ffcv.beton import SIDECAR, Beton, read_beton, read_sidecar
from plugins.ffcv.stream import FFCVOptions, FFCVStream

SPLIT_FILES = {"train": "train.beton", "val": "val.beton", "test": "test.beton"}


class FFCVFormat(DataFormat):
    """.beton files streamed through FFCV's ``Loader``: one image field as ``stim``, integer
    fields as heads, NDArray fields passed through.

    ``path``: a folder written by ``core-data convert --to ffcv``, or one .beton used for
    training.
    ``val_path``: the .beton of the ``val`` split, required when ``path`` is a file (it may be
    the training file).
    ``test_path``: the .beton of the ``test`` split, required when ``path`` is a file (it may
    be the training file).
    ``order``: the training order, ``random`` (a permutation of (seed, epoch), sharded across
    ranks), ``sequential`` or ``quasi_random`` (FFCV's page-aware order for files larger than
    RAM; one process only).
    ``os_cache``: read the file through the OS page cache (FFCV's ``os_cache``).
    ``batches_ahead``: the batches FFCV prepares ahead of the one in use (>= 1).
    ``drop_last``: drop the last, partial training batch (evaluation never drops samples).
    ``distributed``: shard the samples across ranks when the trainer has several (default);
    false makes every rank read everything.
    ``num_workers``: FFCV's decoding threads (>= 1; default: ``data.num_workers``, else every
    CPU core).
    ``image_field``: the image field that becomes ``stim`` (default: the file's only RGB image
    field).
    ``heads``: the integer fields that are label heads (default: the sidecar's heads, else
    every integer field).
    ``auto_adjust``: for a file larger than ``large_fraction`` of the available RAM, adjust
    the loader (smaller batches, fewer batches ahead, ``quasi_random`` in one process, no OS
    cache, fewer threads), logging each change.
    ``large_fraction``: the share of the available RAM above which a file counts as large,
    in (0, 1].
    ``large_batch_size``: the largest batch size for a large file when ``auto_adjust`` is on
    (>= 1)."""

    streams = True

    def __init__(
        self,
        path: str,
        val_path: str | None = None,
        test_path: str | None = None,
        order: Literal["random", "quasi_random", "sequential"] = "random",
        os_cache: bool = True,
        batches_ahead: int = 3,
        drop_last: bool = True,
        distributed: bool | None = None,
        num_workers: int | None = None,
        image_field: str | None = None,
        heads: list[str] | None = None,
        auto_adjust: bool = True,
        large_fraction: float = 0.5,
        large_batch_size: int = 256,
    ) -> None:
        root = Path(path)
        if root.is_dir():
            self.paths = {split: root / name for split, name in SPLIT_FILES.items()}
            self.sidecar = read_sidecar(root)
        else:
            if val_path is None or test_path is None:
                raise ValueError(f"path '{path}' is one .beton (for training); name val_path and test_path too "
                                 "(they may be the same file), or give a folder written by core-data convert --to ffcv")
            self.paths = {"train": root, "val": Path(val_path), "test": Path(test_path)}
            self.sidecar = read_sidecar(root.parent) if (root.parent / SIDECAR).is_file() else None
        if batches_ahead < 1 or (num_workers is not None and num_workers < 1) or large_batch_size < 1:
            raise ValueError("batches_ahead, num_workers and large_batch_size must be at least 1")
        if not 0 < large_fraction <= 1:
            raise ValueError(f"large_fraction must be in (0, 1], not {large_fraction}")
        self.image_field, self.head_names = image_field, heads
        self.options = FFCVOptions(order, os_cache, batches_ahead, drop_last, distributed, num_workers,
                                   auto_adjust, large_fraction, large_batch_size)
        self._betons: dict[str, Beton] = {}

    def beton(self, split: str) -> Beton:
        if split not in self._betons:
            self._betons[split] = read_beton(self.paths[split])
        return self._betons[split]

    def _fields(self) -> tuple[str, list[str], list[str]]:
        """(image field, head fields, ndarray fields) that every split's file must hold."""
        train = self.beton("train")
        images = [name for name, kind in train.fields.items() if kind == "image"]
        image = self.image_field or (images[0] if len(images) == 1 else None)
        if image is None:
            raise DataError(f"{train.path}: {'no' if not images else 'several'} RGB image fields ({train.fields}); "
                            "name the one to use with image_field")
        heads = self.head_names or (list(self.sidecar["heads"]) if self.sidecar else
                                    [n for n, kind in train.fields.items() if kind == "int"])
        arrays = [n for n, kind in train.fields.items() if kind == "ndarray"]
        for split in SPLIT_FILES:
            beton = self.beton(split)
            for name, kind in [(image, "image"), *((h, "int") for h in heads), *((a, "ndarray") for a in arrays)]:
                if beton.fields.get(name) != kind:
                    raise DataError(f"{beton.path}: the run needs the {kind} field '{name}', but the file has "
                                    f"{beton.fields or 'no fields'}")
        return image, heads, arrays

    def meta(self) -> DatasetMeta:
        image, heads, _ = self._fields()
        if self.sidecar:
            classes = {h: int(self.sidecar["heads"][h]) for h in heads}
        else:
            classes = {h: int(max(self.beton(s).int_values[h].max(initial=0) for s in SPLIT_FILES)) + 1 for h in heads}
        name = (self.sidecar or {}).get("dataset_name", self.paths["train"].stem)
        shape = self.beton("train").image_shape or (3, 0, 0)
        return DatasetMeta(name, shape, classes, {s: self.beton(s).num_samples for s in SPLIT_FILES})

    def open(self, split: str) -> FFCVStream:
        image, heads, arrays = self._fields()
        return FFCVStream(self.paths[split], list(self.beton(split).fields), image, heads, arrays, self.options)
