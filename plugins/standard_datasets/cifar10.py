"""Format ``cifar10``: CIFAR-10's Python version as its users have it on disk.

``root`` is the ``cifar-10-batches-py`` folder: the pickles ``data_batch_1`` ...
``data_batch_5`` (training), ``test_batch`` and ``batches.meta`` (``label_names``). Each
batch is a dict with ``data`` (n x 3072 uint8: 1,024 red, green then blue values, 32x32
row-major) and ``labels`` (n integers in 0..9). Pickles are read only through CIFAR-100-MH's
restricted unpickler: no code runs from data. The training batches are split into
``train`` and ``val`` by a fixed permutation (``val_fraction``, ``split_seed``).

With ``download: true`` and batches missing, the official archive is fetched from ``url``,
checked against its md5 (or ``checksum``), and only the files above are taken out of it
(by name, as regular files: no path in the archive is followed).
"""

from __future__ import annotations

import tarfile
from functools import cached_property
from pathlib import Path

import numpy as np

from core import DataError, DataFormat, DatasetMeta, Split
from core.files import write_atomic
from plugins.cifar100mh.format import split_rows
from plugins.cifar100mh.records import as_labels, as_uint8, safe_unpickle
from plugins.cifar100mh.spec import IMAGE_SHAPE, PIXELS
from plugins.standard_datasets.download import check_checksum, fetch

TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
TEST, META = "test_batch", "batches.meta"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE = "cifar-10-python.tar.gz"  # saved under this name whatever the url, removed once unpacked
CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
HEAD = "class"


class Cifar10(DataFormat):
    """CIFAR-10's Python-version pickles, one head ``class`` of 10 classes; ``test`` is
    ``test_batch``, ``val`` a fixed random part of the five training batches."""

    def __init__(self, root: str, val_fraction: float = 0.1, split_seed: int = 0, download: bool = False,
                 url: str = URL, checksum: str = MD5) -> None:
        """``root``: the ``cifar-10-batches-py`` folder (``download`` writes the batches there).
        ``val_fraction``: the share of the training samples held out as the ``val`` split, in
        [0, 1) (0: no validation).
        ``split_seed``: the seed of the permutation that picks the ``val`` samples (the same
        seed gives the same split).
        ``download``: when batches are missing, fetch the archive from ``url``, check it against
        ``checksum`` and take the batches out of it (a dry run downloads nothing).
        ``url``: where the ``cifar-10-python.tar.gz`` archive is downloaded from.
        ``checksum``: the archive's md5 (32 hex digits) or sha256 (64 hex digits)."""
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}")
        check_checksum(checksum)
        self.root, self.val_fraction, self.split_seed = Path(root), val_fraction, split_seed
        self.download, self.url, self.checksum = download, url, checksum

    def meta(self) -> DatasetMeta:
        if self._missing() and self.download:  # not fetched yet: the official shape (a dry run downloads nothing)
            n_train, n_test, names = 50_000, 10_000, CLASS_NAMES
        else:
            n_train, n_test, names = len(self.batches["train"][1]), len(self.batches["test"][1]), self.class_names
        n_val = round(n_train * self.val_fraction)
        return DatasetMeta("cifar10", IMAGE_SHAPE, {HEAD: len(CLASS_NAMES)},
                           {"train": n_train - n_val, "val": n_val, "test": n_test},
                           extra={"class_names": {HEAD: names}})

    def open(self, split: str) -> Split:
        data, labels = self.batches["test" if split == "test" else "train"]
        rows = split_rows(split, len(labels), self.val_fraction, self.split_seed)
        return Split({"stim": data[rows].reshape(-1, *IMAGE_SHAPE), HEAD: labels[rows]})

    def labels(self, split: str) -> dict[str, np.ndarray] | None:
        """The ``class`` labels of ``split``, from the batches ``meta()`` has read already; None
        while they are still to be downloaded (a dry run downloads nothing)."""
        if self._missing() and self.download:
            return None
        labels = self.batches["test" if split == "test" else "train"][1]
        return {HEAD: labels[split_rows(split, len(labels), self.val_fraction, self.split_seed)]}

    @cached_property
    def batches(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{"train": (data, labels), "test": ...}``, the five training batches joined."""
        self._ensure()
        train = [_read_batch(self.root / name) for name in TRAIN]
        return {"train": (np.concatenate([d for d, _ in train]), np.concatenate([lab for _, lab in train])),
                "test": _read_batch(self.root / TEST)}

    @cached_property
    def class_names(self) -> list[str]:
        """``label_names`` of ``batches.meta`` when it is there (else the official names)."""
        path = self.root / META
        if not path.is_file():
            return CLASS_NAMES
        names = _unpickle_dict(path, "label_names")["label_names"]
        if not isinstance(names, list) or len(names) != len(CLASS_NAMES):
            raise DataError(f"{path}: 'label_names' must be a list of {len(CLASS_NAMES)} names")
        return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]

    def _missing(self) -> list[str]:
        return [name for name in (*TRAIN, TEST) if not (self.root / name).is_file()]

    def _ensure(self) -> None:
        missing = self._missing()
        if not missing:
            return
        if not self.download:
            raise DataError(f"{self.root}: CIFAR-10 batches missing: {', '.join(missing)}\n  fix: set download: true "
                            f"to fetch them from {self.url}, or point root at the cifar-10-batches-py folder")
        archive = self.root / ARCHIVE
        if not archive.is_file():
            fetch(self.url, archive, self.checksum)
        _extract(archive, self.root, [*TRAIN, TEST, META])
        archive.unlink()


def _unpickle_dict(path: Path, *keys: str) -> dict:
    """The dict pickled in ``path`` (byte keys, as Python 2 wrote them, decoded), holding ``keys``."""
    obj = safe_unpickle(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: holds a {type(obj).__name__}, not CIFAR-10's dict with {list(keys)}")
    obj = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    missing = [k for k in keys if k not in obj]
    if missing:
        raise DataError(f"{path}: lacks {missing}; is this CIFAR-10's Python version?")
    return obj


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    obj = _unpickle_dict(path, "data", "labels")
    data = as_uint8(path, "data", obj["data"], "pixels")
    if data.ndim != 2 or data.shape[1] != PIXELS:
        raise DataError(f"{path}: 'data' has shape {data.shape}, expected (n, {PIXELS})")
    labels = as_labels(path, "labels", obj["labels"])
    if labels.shape != (len(data),) or (len(labels) and not 0 <= labels.min() <= labels.max() < len(CLASS_NAMES)):
        raise DataError(f"{path}: 'labels' must hold {len(data)} labels in [0, {len(CLASS_NAMES)})")
    return data, labels


def _extract(archive: Path, root: Path, names: list[str]) -> None:
    """Write the regular files called ``names`` (anywhere in ``archive``) into ``root``."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile() and Path(m.name).name in names}
            missing = [name for name in names if name not in members]
            if missing:
                raise DataError(f"{archive}: the archive lacks {missing}; is the url option CIFAR-10's Python version?")
            for name in names:
                write_atomic(root / name, tar.extractfile(members[name]).read())
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{archive}: not a readable tar archive ({exc}); delete it and run again to download it") from None
