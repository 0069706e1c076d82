"""The ``image_folder`` dataset tool: ``core-data convert --to image_folder``, ``inspect``, ``validate``."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core import SPLITS, DataError, DataFormat, DatasetTool
from core.files import new_folder
from plugins.image_folder.decode import decode_all, default_workers
from plugins.image_folder.format import ImageFolder
from plugins.image_folder.scan import IMAGE_EXTENSIONS

PROBE_SIZE = 8  # validate decodes every image fully but keeps only this many pixels a side


class ImageFolderTool(DatasetTool):
    def recognises(self, path: Path) -> bool:
        """A folder whose class folders (or ``train``'s) hold image files."""
        path = Path(path)
        folder = path / "train" if (path / "train").is_dir() else path
        if not folder.is_dir():
            return False
        for entry in sorted(folder.iterdir())[:10]:
            if entry.is_dir() and not entry.name.startswith("."):
                if any(f.suffix.lower() in IMAGE_EXTENSIONS for f in entry.iterdir()):
                    return True
        return False

    def write(self, source: DataFormat, out: Path, image_format: Literal["png", "jpeg"] = "png") -> None:
        """Write every split of ``source`` as ``out/<split>/<class index>/<sample>.<ext>``; class
        folders are zero-padded label indices (so sorting them keeps the labels)."""
        from PIL import Image

        meta = source.meta()
        if len(meta.heads) != 1 or meta.stim_axes != "CHW" or meta.stim_shape[0] not in (1, 3):
            raise DataError(f"an image folder holds images of 1 or 3 channels with one label head; '{meta.name}' has "
                            f"stim {meta.stim_axes} {meta.stim_shape} and heads {list(meta.heads)}")
        (head, classes), = meta.heads.items()
        width = len(str(classes - 1))
        with new_folder(Path(out), "the image folder") as root:
            for split in SPLITS:
                fields = self.rows(source.open(split))
                missing = sorted(set(range(classes)) - set(np.unique(fields[head]).tolist())) if split == "train" else []
                if missing:  # the reader numbers the train folder's class folders: labels would shift
                    raise DataError(f"'{meta.name}' has no train sample of class {missing[0]} of head '{head}' "
                                    f"({len(missing)} of {classes} classes missing); an image folder numbers its "
                                    "classes by the train split's class folders, so reading it back would renumber "
                                    "the labels: convert to hdf5, webdataset or cifar100mh, which keep label values")
                for i, (pixels, label) in enumerate(zip(fields["stim"], fields[head])):
                    folder = root / split / f"{int(label):0{width}d}"
                    folder.mkdir(parents=True, exist_ok=True)
                    image = np.asarray(pixels, dtype=np.uint8)
                    Image.fromarray(image[0] if len(image) == 1 else image.transpose(1, 2, 0)).save(
                        folder / f"{i:06d}.{'png' if image_format == 'png' else 'jpg'}")

    def inspect(self, path: Path) -> dict[str, Any]:
        fmt = ImageFolder(str(path))
        report: dict[str, Any] = {"format": "image_folder", "classes": len(fmt.classes),
                                  "split_folders": sorted(fmt.folders) or "none (split by fractions)"}
        for name, listing in fmt.listings.items():
            counts = np.bincount(listing.labels, minlength=len(fmt.classes))
            report[name] = {"folder": str(listing.folder), "images": len(listing.files),
                            "per_class": dict(zip(fmt.classes, counts.tolist()))}
        caches = sorted((Path(path) / ".core-cache").glob("*.npy"))
        report["caches"] = [f"{c.name} ({c.stat().st_size} bytes)" for c in caches if not c.name.endswith(".labels.npy")]
        return report

    def validate(self, path: Path) -> list[str]:
        """Every unreadable image (decoded in full) and every class folder without an image."""
        fmt = ImageFolder(str(path))
        try:
            listings, classes = list(fmt.listings.values()), fmt.classes
        except DataError as exc:
            return [str(exc)]
        problems = []
        for listing in listings:
            counts = np.bincount(listing.labels, minlength=len(classes))
            problems += [f"{listing.folder / name}: no image files" for name, n in zip(classes, counts) if n == 0]
            with tempfile.TemporaryDirectory() as scratch:
                bad = decode_all([str(listing.folder / f) for f in listing.files], Path(scratch) / "probe.npy",
                                 PROBE_SIZE, 3, default_workers())
            problems += [f"{listing.folder / listing.files[row]}: {reason}" for row, reason in bad]
        return problems
