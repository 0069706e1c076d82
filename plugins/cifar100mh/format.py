"""Format ``cifar100mh``: a CIFAR-100-MH folder as a map-style dataset with one head per parameter.

Heads come from the metadata: one per parameter, ``max - min + 1`` classes, target
``value - min``. The file's train records are split into ``train`` and ``val`` by a fixed
permutation (``val_fraction``, ``split_seed``); ``test`` is the test file.

Beyond the format contract it offers the metadata API its users know:
``image_shape()``, ``heads_config()``, ``parameter_info(name)``, ``statistics()``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from core import DataError, DataFormat, DatasetMeta, Split
from plugins.cifar100mh.records import Records, load_batch
from plugins.cifar100mh.spec import BATCH_FILES, IMAGE_SHAPE, DatasetInfo, read_info


def split_rows(split: str, n: int, fraction: float, seed: int) -> slice | np.ndarray:
    """The rows of ``split`` in its file of ``n`` samples: all of the test file; of the training
    file, sorted ``train`` or ``val`` indices, a fixed random ``fraction`` held out as ``val``."""
    if split == "test":
        return slice(None)
    order = np.random.default_rng(seed).permutation(n)
    n_val = round(n * fraction)
    return np.sort(order[n_val:] if split == "train" else order[:n_val])


def require_samples(root: Path, sizes: dict[str, int], n_train: int, val_fraction: float) -> None:
    """Every split a run uses holds a sample: train and test always, val unless ``val_fraction`` is 0
    (an empty split would train on nothing, or skip validation or testing without a word)."""
    if sizes["test"] == 0:
        raise DataError(f"{root}: the test split holds no sample (the test file has no records); a run tests on it: "
                        "write test records")
    if sizes["val"] == 0 and val_fraction > 0:
        raise DataError(f"{root}: the val split holds no sample ({n_train} training records x val_fraction "
                        f"{val_fraction} rounds to 0); raise val_fraction, or set it to 0 to train without validation")
    if sizes["train"] == 0:
        raise DataError(f"{root}: the train split holds no sample ({n_train} training records, {sizes['val']} of them "
                        "held out for val); write training records, or lower val_fraction")


class Cifar100MH(DataFormat):
    """A CIFAR-100-MH folder, one head per parameter of its description; ``test`` is
    ``test_batch``, ``val`` a fixed random part of ``train_batch``.

    ``root``: the folder holding ``cifar100mh_dataset_info.json``, ``train_batch`` and
    ``test_batch``.
    ``val_fraction``: the share of the training records held out as the ``val`` split, in
    [0, 1) (0: no validation).
    ``split_seed``: the seed of the permutation that picks the ``val`` records (the same seed
    gives the same split)."""

    def __init__(self, root: str, val_fraction: float = 0.1, split_seed: int = 0) -> None:
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}")
        self.root, self.val_fraction, self.split_seed = Path(root), val_fraction, split_seed
        self._records: dict[str, Records] = {}

    @cached_property
    def info(self) -> DatasetInfo:
        return read_info(self.root)

    def meta(self) -> DatasetMeta:
        info = self.info
        n_val = round(info.train_samples * self.val_fraction)
        sizes = {"train": info.train_samples - n_val, "val": n_val, "test": info.test_samples}
        require_samples(self.root, sizes, info.train_samples, self.val_fraction)
        return DatasetMeta(
            name=info.dataset_name,
            stim_shape=IMAGE_SHAPE,
            heads=info.heads,
            split_sizes=sizes,
            extra={"parameter_mappings": {k: v.model_dump() for k, v in info.parameter_mappings.items()}},
        )

    def records(self, file_split: str) -> Records:
        """One batch file, parsed once (train and val both come from ``train_batch``; the
        pixels stay a memory map until a storage backend copies them)."""
        if file_split not in self._records:
            self._records[file_split] = load_batch(self.root / BATCH_FILES[file_split], self.info, file_split)
        return self._records[file_split]

    def open(self, split: str) -> Split:
        records, rows = self._rows(split)
        return Split({"stim": records.pixels[rows], **self.labels(split)})

    def labels(self, split: str) -> dict[str, np.ndarray]:
        """Each parameter's classes (``value - min``) of ``split``, from the label bytes (the
        pixels of a binary batch file stay a memory map, unread)."""
        records, rows = self._rows(split)
        return {name: records.values[rows, j].astype(np.int64) - self.info.parameter_mappings[name].min
                for j, name in enumerate(self.info.parameter_names)}

    def _rows(self, split: str) -> tuple[Records, slice | np.ndarray]:
        """The batch file ``split`` comes from, and the split's rows in it."""
        records = self.records("test" if split == "test" else "train")
        return records, split_rows(split, len(records.values), self.val_fraction, self.split_seed)

    # ------------------------------------------------------------ metadata API
    def image_shape(self) -> tuple[int, int, int]:
        return IMAGE_SHAPE

    def heads_config(self) -> dict[str, int]:
        return self.info.heads

    def parameter_info(self, name: str) -> dict[str, Any]:
        if name not in self.info.parameter_mappings:
            raise DataError(f"{self.root}: no parameter '{name}'; parameters: {self.info.parameter_names}")
        mapping = self.info.parameter_mappings[name]
        return {**mapping.model_dump(), "classes": mapping.classes}

    def statistics(self) -> dict[str, Any]:
        """Per file split: sample count, and per head the class distribution and value statistics."""
        stats: dict[str, Any] = {}
        for file_split in BATCH_FILES:
            values = self.records(file_split).values
            heads = {}
            for j, name in enumerate(self.info.parameter_names):
                mapping = self.info.parameter_mappings[name]
                column = values[:, j].astype(np.int64)
                heads[name] = {
                    "class_distribution": np.bincount(column - mapping.min, minlength=mapping.classes).tolist(),
                    "mean": float(column.mean()) if len(column) else None,
                    "min": int(column.min()) if len(column) else None,
                    "max": int(column.max()) if len(column) else None,
                }
            stats[file_split] = {"n_samples": int(len(values)), "heads": heads}
        return stats
