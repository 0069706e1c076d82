"""Format ``cifar100``: CIFAR-100 as its users have it on disk (the Python version).

``root`` is the ``cifar-100-python`` folder holding the pickles ``train`` and ``test``:
dicts with ``data`` (n x 3072 uint8, 1,024 red then green then blue, 32x32 row-major),
``coarse_labels`` (20 superclasses) and ``fine_labels`` (100 classes). They are read only
through the restricted unpickler (no code runs from data). Heads: ``coarse`` and ``fine``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core import DataError, DataFormat, DatasetMeta, Split
from plugins.cifar100mh.format import require_samples, split_rows
from plugins.cifar100mh.records import as_labels, as_uint8, safe_unpickle
from plugins.cifar100mh.spec import IMAGE_SHAPE, PIXELS

HEADS = {"coarse": ("coarse_labels", 20), "fine": ("fine_labels", 100)}


class Cifar100(DataFormat):
    """CIFAR-100's Python-version pickles, heads ``coarse`` (20 superclasses) and ``fine`` (100
    classes); ``test`` is the test pickle, ``val`` a fixed random part of the training one.

    ``root``: the ``cifar-100-python`` folder holding the pickles ``train`` and ``test``.
    ``val_fraction``: the share of the training samples held out as the ``val`` split, in
    [0, 1) (0: no validation).
    ``split_seed``: the seed of the permutation that picks the ``val`` samples (the same seed
    gives the same split)."""

    def __init__(self, root: str, val_fraction: float = 0.1, split_seed: int = 0) -> None:
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}")
        self.root, self.val_fraction, self.split_seed = Path(root), val_fraction, split_seed
        self._files: dict[str, dict[str, np.ndarray]] = {}

    def _file(self, name: str) -> dict[str, np.ndarray]:
        if name not in self._files:
            self._files[name] = _read(self.root / name)
        return self._files[name]

    def meta(self) -> DatasetMeta:
        n_train = len(self._file("train")["data"])
        n_val = round(n_train * self.val_fraction)
        sizes = {"train": n_train - n_val, "val": n_val, "test": len(self._file("test")["data"])}
        require_samples(self.root, sizes, n_train, self.val_fraction)
        return DatasetMeta("cifar100", IMAGE_SHAPE, {head: n for head, (_, n) in HEADS.items()}, sizes)

    def open(self, split: str) -> Split:
        raw, rows = self._rows(split)
        return Split({"stim": raw["data"][rows].reshape(-1, *IMAGE_SHAPE), **self.labels(split)})

    def labels(self, split: str) -> dict[str, np.ndarray]:
        """``coarse`` and ``fine`` of ``split`` (the pickle is read once, by ``meta()`` already)."""
        raw, rows = self._rows(split)
        return {head: raw[key][rows] for head, (key, _) in HEADS.items()}

    def _rows(self, split: str) -> tuple[dict[str, np.ndarray], slice | np.ndarray]:
        """The pickle ``split`` comes from, and the split's rows in it."""
        raw = self._file("test" if split == "test" else "train")
        return raw, split_rows(split, len(raw["data"]), self.val_fraction, self.split_seed)


def _read(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path}: missing; a cifar-100-python folder holds the pickles 'train' and 'test'")
    obj = safe_unpickle(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: holds a {type(obj).__name__}, not CIFAR-100's dict")
    obj = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    missing = [k for k in ("data", "coarse_labels", "fine_labels") if k not in obj]
    if missing:
        raise DataError(f"{path}: lacks {missing}; is this CIFAR-100's Python version?")
    data = as_uint8(path, "data", obj["data"], "pixels")
    if data.ndim != 2 or data.shape[1] != PIXELS:
        raise DataError(f"{path}: 'data' has shape {data.shape}, expected (n, {PIXELS})")
    out = {"data": data}
    for head, (key, classes) in HEADS.items():
        labels = as_labels(path, key, obj[key])
        if labels.shape != (len(data),) or (len(labels) and not 0 <= labels.min() <= labels.max() < classes):
            raise DataError(f"{path}: '{key}' must hold {len(data)} labels in [0, {classes})")
        out[key] = labels
    return out
