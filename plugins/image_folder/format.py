"""Format ``image_folder``: ``root/<class>/<image>`` (ImageNet's layout) decoded once, then memory-mapped.

Splits are ``root/train``, ``root/val`` and ``root/test`` when ``root/train`` exists; a
split without its folder is held out of ``train`` (``val_fraction``, ``test_fraction``,
``split_seed``). Without a ``train`` folder, ``root`` itself is split that way. Class
labels are the indices of the sorted class folders (of ``train``); ``meta().extra``
carries their names as ``class_names: {"class": [...]}``.

``meta()`` only lists folder and file names. The first ``open`` decodes every image in a
pool of ``workers`` processes to uint8 ``(channels, image_size, image_size)`` and caches
the result (see :mod:`plugins.image_folder.cache`); later opens map the cache at once.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np

from core import SPLITS, DataError, DataFormat, DatasetMeta, Split
from plugins.image_folder.cache import CacheFiles, Decoded, load_cached, load_or_build
from plugins.image_folder.decode import default_workers
from plugins.image_folder.scan import Listing, class_names, list_images, split_folders

HEAD = "class"


class ImageFolder(DataFormat):
    """``root/<class>/<image>`` folders decoded once to uint8 squares, one head ``class``.

    ``root``: the folder of class folders, or of ``train``, ``val`` and ``test`` folders laid
    out that way.
    ``image_size``: the side of the square samples in pixels (>= 1): each image is resized so
    its shorter side fits, then centre-cropped.
    ``channels``: 3 (RGB) or 1 (greyscale).
    ``val_fraction``: the share of the images of ``train`` (or of ``root``, without it) held
    out as ``val`` when there is no ``val`` folder (>= 0; with ``test_fraction``, the sum
    must stay below 1).
    ``test_fraction``: the share of the images of ``train`` (or of ``root``, without it) held
    out as ``test`` when there is no ``test`` folder (>= 0).
    ``split_seed``: the seed of the permutation that picks the held-out images.
    ``workers``: processes that decode the images on the first read (0: in this process;
    by default, one per CPU core this process may use).
    ``skip_bad``: leave out image files that cannot be decoded (logged as a warning) instead of
    stopping with an error naming them.
    ``cache_dir``: the folder of the decode cache (default: ``.core-cache`` inside ``root``;
    set it when ``root`` is read-only)."""

    def __init__(
        self,
        root: str,
        image_size: int = 64,
        channels: Literal[1, 3] = 3,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        workers: int | None = None,
        skip_bad: bool = False,
        cache_dir: str | None = None,
    ) -> None:
        if image_size < 1:
            raise ValueError(f"image_size must be at least 1 pixel, not {image_size}")
        if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
            raise ValueError(f"val_fraction {val_fraction} and test_fraction {test_fraction} must be >= 0 and sum below 1")
        if workers is not None and workers < 0:
            raise ValueError(f"workers must be 0 (decode in this process) or more, not {workers}")
        self.root, self.image_size, self.channels = Path(root), image_size, channels
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self.workers = default_workers() if workers is None else workers
        self.skip_bad, self.cache_dir = skip_bad, Path(cache_dir) if cache_dir else None
        self._decoded: dict[str, Decoded] = {}

    @cached_property
    def folders(self) -> dict[str, Path]:
        """The split folders (``{}``: ``root`` is split by fractions)."""
        if not self.root.is_dir():
            raise DataError(f"{self.root}: no such folder; an image folder holds one subfolder per class "
                            "(root/<class>/<image>), or train/, val/, test/ subfolders laid out that way")
        return split_folders(self.root)

    @cached_property
    def classes(self) -> list[str]:
        return class_names(self.folders.get("train", self.root))

    @cached_property
    def listings(self) -> dict[str, Listing]:
        """One listing per folder read: each split folder, or ``root`` alone."""
        wanted = self.folders or {"all": self.root}
        listings = {name: list_images(folder, self.classes) for name, folder in wanted.items()}
        for name, listing in listings.items():
            if not listing.files:
                raise DataError(f"{listing.folder}: no image files in its class folders (extensions: .jpg, .png, ...)")
        return listings

    def meta(self) -> DatasetMeta:
        held = self._holdout(len(self.listings[self._source].files))
        sizes = {split: len(held[split]) if split in held else len(self.listings[split].files) for split in SPLITS}
        for split, size in sizes.items():
            if size == 0:
                fix = ("lower val_fraction and test_fraction, or add images" if split == "train"
                       else f"raise {split}_fraction or add a {split}/ folder")
                raise DataError(f"{self.root}: the {split} split holds no image (of {sum(sizes.values())}); {fix}")
        return DatasetMeta(
            name=self.root.resolve().name or "image_folder",
            stim_shape=(self.channels, self.image_size, self.image_size),
            heads={HEAD: len(self.classes)},
            split_sizes=sizes,
            extra={"class_names": {HEAD: list(self.classes)}},
        )

    def open(self, split: str) -> Split:
        decoded = self.decoded(self._listing(split))
        rows = self._rows(split, len(decoded.labels))
        return Split({"stim": decoded.stim[rows], HEAD: decoded.labels[rows]})

    def labels(self, split: str) -> dict[str, np.ndarray] | None:
        """The ``class`` labels of ``split`` without decoding an image: those of a valid decode
        cache (without the files it skipped as unreadable), else those of the folder scan; None
        with ``skip_bad`` and no cache (which files decode is known only once they are decoded)."""
        name = self._listing(split)
        if name not in self._decoded:
            cached = load_cached(self._cache_files(name), self.listings[name].stamp)
            if cached is not None:
                self._decoded[name] = cached  # open() maps it without checking the stamp again
            elif self.skip_bad:
                return None
        labels = self._decoded[name].labels if name in self._decoded else self.listings[name].labels
        return {HEAD: labels[self._rows(split, len(labels))]}

    def decoded(self, name: str) -> Decoded:
        """The decoded images of one listing (``train``, ``val``, ``test`` or ``all``), decoded once."""
        if name not in self._decoded:
            self._decoded[name] = load_or_build(self.listings[name], self._cache_files(name), self.image_size,
                                                self.channels, self.workers, self.skip_bad)
        return self._decoded[name]

    def _cache_files(self, name: str) -> CacheFiles:
        return CacheFiles.of(self.listings[name], self.root, self.image_size, self.channels, self.cache_dir)

    def _listing(self, split: str) -> str:
        """The listing ``split`` comes from: its own folder, else the source listing."""
        return split if split in self.folders else self._source

    def _rows(self, split: str, n: int) -> slice | np.ndarray:
        """The rows of ``split`` in its listing's ``n`` samples (all of them: a slice, so the
        memory map itself, no copy)."""
        if split != "train" and split in self.folders:
            return slice(None)
        rows = self._holdout(n)[split]
        return slice(None) if len(rows) == n else rows

    @property
    def _source(self) -> str:
        """The listing that train (and every split without a folder) comes from."""
        return "train" if self.folders else "all"

    def _holdout(self, n: int) -> dict[str, np.ndarray]:
        """Rows of the source listing's ``n`` images for train and each split without a folder:
        consecutive parts of a fixed permutation, each sorted (memory-map reads in file order)."""
        order = np.random.default_rng(self.split_seed).permutation(n)
        parts: dict[str, np.ndarray] = {}
        start = 0
        for split in ("val", "test"):
            if split not in self.folders:
                count = round(n * (self.val_fraction if split == "val" else self.test_fraction))
                parts[split] = np.sort(order[start : start + count])
                start += count
        parts["train"] = np.sort(order[start:])
        return parts
