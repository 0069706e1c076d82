"""Lists an image folder without opening an image: class folders, image files, their stamp.

A folder holds one subfolder per class (``root/<class>/<image>``, ImageNet's layout); images
may sit in nested folders below their class folder. Hidden entries (``.core-cache``,
``.DS_Store``) and files without an image extension are ignored. When ``root`` has a
``train`` subfolder, ``root/train``, ``root/val`` and ``root/test`` are the splits, each
laid out the same way.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from core import SPLITS, DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


@dataclass(frozen=True)
class Listing:
    """The images of one folder: ``files`` relative to ``folder`` (class, then path order)
    and the index of each one's class in the dataset's class list."""

    folder: Path
    files: list[str]
    labels: np.ndarray

    @cached_property
    def stamp(self) -> str:
        """A digest of every file's name, size and modification time: a changed folder changes it.
        Computed once per listing (a stat per file: on a network file system, the slow part of a
        dry run), like the listing itself."""
        digest = hashlib.sha256()
        for name in self.files:
            info = os.stat(self.folder / name)
            digest.update(f"{name}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
        return digest.hexdigest()


def split_folders(root: Path) -> dict[str, Path]:
    """``{split: folder}`` for the split subfolders of ``root`` (empty when it has no ``train``)."""
    if not (root / "train").is_dir():
        held = [f"{split}/" for split in SPLITS[1:] if (root / split).is_dir()]
        if held:  # else val and test would be read as two classes
            raise DataError(f"{root}: has {' and '.join(held)} but no train/; split folders need train/ (its class "
                            "folders are the classes): add it, or rename the folders if they are classes")
        return {}
    return {split: root / split for split in SPLITS if (root / split).is_dir()}


def class_names(folder: Path) -> list[str]:
    """The class folders of ``folder``, sorted; a folder without any is a DataError."""
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder; an image folder holds one subfolder per class (root/<class>/<image>)")
    names = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith("."))
    if not names:
        raise DataError(f"{folder}: no class folders; an image folder holds one subfolder per class (root/<class>/<image>)")
    return names


def list_images(folder: Path, classes: list[str]) -> Listing:
    """Every image file below ``folder``'s class folders; a class folder that is not in
    ``classes`` (one in ``val`` that ``train`` lacks) is a DataError."""
    unknown = sorted(set(class_names(folder)) - set(classes))
    if unknown:
        raise DataError(f"{folder}: class folders {unknown[:10]} are not among the {len(classes)} classes of the "
                        "train folder; every split must use the train folder's classes (add them there or remove them)")
    files: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = sorted(_images(folder, name))
        files += found
        labels += [label] * len(found)
    return Listing(folder, files, np.asarray(labels, dtype=np.int64))


def _images(folder: Path, class_name: str) -> list[str]:
    found = []
    for parent, dirs, names in os.walk(folder / class_name, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        relative = Path(parent).relative_to(folder)
        found += [(relative / n).as_posix() for n in names
                  if not n.startswith(".") and os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS]
    return found
