"""The ``idx`` dataset tool: ``core-data convert --to idx``, ``inspect`` and ``validate`` of an
MNIST-style folder (the four IDX files, plain or ``.gz``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core import DataError, DataFormat, DatasetTool
from plugins.standard_datasets.idx import IMAGES, LABELS, is_gzip, read_header, read_idx, write_idx
from plugins.standard_datasets.mnist import FILES, find_file, same_count


class IdxTool(DatasetTool):
    def recognises(self, path: Path) -> bool:
        return any((Path(path) / f"{FILES['train'][0]}{ext}").is_file() for ext in ("", ".gz"))

    def write(self, source: DataFormat, out: Path, compress: bool = True) -> None:
        """Write ``source``'s train and val splits as the train files, its test split as the
        t10k files; samples must be 1 x H x W uint8 with one head of at most 256 classes."""
        meta = source.meta()
        if len(meta.heads) != 1 or len(meta.stim_shape) != 3 or meta.stim_shape[0] != 1 or max(meta.heads.values()) > 256:
            raise DataError(f"IDX files hold 1 x H x W images and one head of at most 256 classes; '{meta.name}' has "
                            f"stim {meta.stim_shape} and heads {meta.heads}")
        (head,) = meta.heads
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for file_split, parts in {"train": ("train", "val"), "test": ("test",)}.items():
            opened = [source.open(split).fields for split in parts]
            images, labels = FILES[file_split]
            suffix = ".gz" if compress else ""
            write_idx(out / f"{images}{suffix}", np.concatenate([np.asarray(f["stim"])[:, 0] for f in opened]))
            write_idx(out / f"{labels}{suffix}", np.concatenate([np.asarray(f[head]) for f in opened]))

    def inspect(self, path: Path) -> dict[str, Any]:
        report: dict[str, Any] = {"format": "idx"}
        for file_split, stems in FILES.items():
            for stem, magic in zip(stems, (IMAGES, LABELS)):
                found = find_file(Path(path), stem)
                report[stem] = "missing" if found is None else {
                    "file": found.name, "gzip": is_gzip(found), "shape": list(read_header(found, magic))}
            labels = find_file(Path(path), stems[1])
            if labels is not None:
                report[f"{file_split} labels per class"] = np.bincount(read_idx(labels, LABELS)).tolist()
        return report

    def validate(self, path: Path) -> list[str]:
        """Every missing, damaged or mismatched file (magic, length, image and label counts)."""
        problems = []
        for stems in FILES.values():
            counts = []
            for stem, magic in zip(stems, (IMAGES, LABELS)):
                found = find_file(Path(path), stem)
                if found is None:
                    problems.append(f"{Path(path) / stem}: missing (plain or .gz)")
                    continue
                try:
                    counts.append((found, len(read_idx(found, magic))))
                except DataError as exc:
                    problems.append(str(exc))
            try:
                if len(counts) == 2:
                    same_count(*counts[0], *counts[1])
            except DataError as exc:
                problems.append(str(exc))
        return problems
