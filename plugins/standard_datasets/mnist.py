"""Formats ``mnist`` and ``fashion_mnist``: the four IDX files as their publishers ship them.

``root`` holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each plain or gzip-compressed
(``.gz``, as downloaded). ``stim`` is uint8 ``(1, 28, 28)``; one head of 10 classes
(``digit`` for MNIST, ``class`` for Fashion-MNIST). The training file is split into
``train`` and ``val`` by a fixed permutation (``val_fraction``, ``split_seed``); ``test``
is the t10k file. With ``download: true`` missing files are fetched from ``mirror`` and
checked against the official md5 sums (or ``checksums``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from core import DataError, DataFormat, DatasetMeta, Split
from plugins.cifar100mh.format import split_rows
from plugins.standard_datasets.download import check_checksum, fetch
from plugins.standard_datasets.idx import IMAGES, LABELS, read_header, read_idx

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
OFFICIAL = {"train": 60_000, "test": 10_000, "side": 28}  # what meta() reports before a download


@dataclass(frozen=True)
class Release:
    """One published IDX dataset: where it is, its files' md5 sums (of the ``.gz``), its classes."""

    name: str
    head: str
    mirror: str
    checksums: dict[str, str]
    class_names: tuple[str, ...]


MNIST = Release("mnist", "digit", "https://ossci-datasets.s3.amazonaws.com/mnist/", {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}, tuple(str(d) for d in range(10)))
FASHION_MNIST = Release("fashion_mnist", "class", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}, ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"))


class IdxDataset(DataFormat):
    release: ClassVar[Release]

    def __init__(
        self,
        root: str,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        download: bool = False,
        mirror: str | None = None,
        checksums: dict[str, str] | None = None,
    ) -> None:
        """``root``: the folder holding the four IDX files, plain or ``.gz`` (``download``
        writes them there).
        ``val_fraction``: the share of the training samples held out as the ``val`` split, in
        [0, 1) (0: no validation).
        ``split_seed``: the seed of the permutation that picks the ``val`` samples (the same
        seed gives the same split).
        ``download``: fetch the missing files from ``mirror`` and check each against its
        checksum (a dry run downloads nothing).
        ``mirror``: the URL the four ``.gz`` files are under (default: the publisher's).
        ``checksums``: ``{file name: md5 or sha256}`` replacing the official sums of the
        ``.gz`` files named."""
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}")
        unknown = sorted(set(checksums or {}) - set(self.release.checksums))
        if unknown:
            raise ValueError(f"checksums names {unknown}; the files are {sorted(self.release.checksums)}")
        for checksum in (checksums or {}).values():
            check_checksum(checksum)
        self.root, self.val_fraction, self.split_seed, self.download = Path(root), val_fraction, split_seed, download
        self.mirror = mirror or self.release.mirror
        self.checksums = {**self.release.checksums, **(checksums or {})}
        self._images: dict[str, np.ndarray] = {}
        self._labels: dict[str, np.ndarray] = {}

    def _path(self, stem: str) -> Path | None:
        return find_file(self.root, stem)

    def _missing(self) -> list[str]:
        return [stem for pair in FILES.values() for stem in pair if self._path(stem) is None]

    def _ensure(self) -> None:
        """Fetch the missing files when ``download`` is set, else say which are missing."""
        missing = self._missing()
        if missing and not self.download:
            raise DataError(f"{self.root}: {self.release.name} files missing: {', '.join(missing)} (plain or .gz)\n"
                            f"  fix: set download: true to fetch them from {self.mirror}, or put them there")
        for stem in missing:
            name = f"{stem}.gz"
            fetch(self.mirror.rstrip("/") + "/" + name, self.root / name, self.checksums[name])

    def meta(self) -> DatasetMeta:
        if self._missing() and self.download:  # not fetched yet: the official shape (a dry run downloads nothing)
            counts, side = {"train": OFFICIAL["train"], "test": OFFICIAL["test"]}, (OFFICIAL["side"],) * 2
        else:
            self._ensure()
            counts, side = {}, ()
            for split, (images, labels) in FILES.items():
                n, *side = read_header(self._path(images), IMAGES)
                same_count(self._path(images), n, self._path(labels), read_header(self._path(labels), LABELS)[0])
                counts[split] = n
        n_val = round(counts["train"] * self.val_fraction)
        return DatasetMeta(
            name=self.release.name,
            stim_shape=(1, *side),
            heads={self.release.head: len(self.release.class_names)},
            split_sizes={"train": counts["train"] - n_val, "val": n_val, "test": counts["test"]},
            extra={"class_names": {self.release.head: list(self.release.class_names)}},
        )

    def open(self, split: str) -> Split:
        file_split = "test" if split == "test" else "train"
        labels = self._file_labels(file_split)
        if file_split not in self._images:  # read_idx checks its header's count, which _file_labels matched to the labels
            self._images[file_split] = read_idx(self._path(FILES[file_split][0]), IMAGES)
        rows = split_rows(split, len(labels), self.val_fraction, self.split_seed)
        return Split({"stim": self._images[file_split][rows][:, None], self.release.head: labels[rows]})

    def labels(self, split: str) -> dict[str, np.ndarray] | None:
        """The labels of ``split`` from the labels file alone (the images file's header gives its
        count); None while the files are still to be downloaded (a dry run downloads nothing)."""
        if self._missing() and self.download:
            return None
        labels = self._file_labels("test" if split == "test" else "train")
        return {self.release.head: labels[split_rows(split, len(labels), self.val_fraction, self.split_seed)]}

    def _file_labels(self, file_split: str) -> np.ndarray:
        """The labels file of ``file_split`` (``train`` or ``test``) as int64, read and checked once."""
        if file_split not in self._labels:
            self._ensure()
            image_path, label_path = (self._path(stem) for stem in FILES[file_split])
            labels = read_idx(label_path, LABELS)
            same_count(image_path, read_header(image_path, IMAGES)[0], label_path, len(labels))
            classes = len(self.release.class_names)
            if len(labels) and labels.max() >= classes:
                row = int(np.argmax(labels >= classes))
                raise DataError(f"{label_path}: label {labels[row]} at record {row} is outside 0..{classes - 1}; "
                                "is this the right file?")
            self._labels[file_split] = labels.astype(np.int64)
        return self._labels[file_split]


def find_file(root: Path, stem: str) -> Path | None:
    """``root/stem``, else ``root/stem.gz``, else None."""
    return next((path for path in (root / stem, root / f"{stem}.gz") if path.is_file()), None)


def same_count(images: Path, n_images: int, labels: Path, n_labels: int) -> None:
    if n_images != n_labels:
        raise DataError(f"{images} holds {n_images} images but {labels} holds {n_labels} labels; "
                        "the two files must come from the same release")


class Mnist(IdxDataset):
    """MNIST's handwritten digits, uint8 (1, 28, 28), one head ``digit`` of 10 classes."""

    release = MNIST


class FashionMnist(IdxDataset):
    """Fashion-MNIST's clothing images, uint8 (1, 28, 28), one head ``class`` of 10 classes."""

    release = FASHION_MNIST
