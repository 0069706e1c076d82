"""The ``cifar100mh`` dataset tool: ``core-data convert --to cifar100mh``, ``inspect``, ``validate``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from core import DataError, DataFormat, DatasetMeta, DatasetTool
from core.files import new_folder
from plugins.cifar100mh.format import Cifar100MH
from plugins.cifar100mh.records import encode_records, pickle_records, read_batch
from plugins.cifar100mh.spec import BATCH_FILES, IMAGE_SHAPE, INFO_FILE, DatasetInfo, ParameterMapping, read_info, write_info


class Cifar100MHTool(DatasetTool):
    def recognises(self, path: Path) -> bool:
        return (Path(path) / INFO_FILE).is_file()

    def write(self, source: DataFormat, out: Path, variant: Literal["binary", "pickle"] = "binary") -> None:
        """Write ``source`` as CIFAR-100-MH: its train and val splits become ``train_batch``,
        its test split ``test_batch``; each head becomes a parameter with values 0..classes-1."""
        meta = source.meta()
        if tuple(meta.stim_shape) != IMAGE_SHAPE:
            raise DataError(f"CIFAR-100-MH holds 3x32x32 images; '{meta.name}' has {meta.stim_shape} "
                            "(for digits: --option image_size=32 --option channels=3)")
        too_many = {h: n for h, n in meta.heads.items() if n > 256}
        if too_many:
            raise DataError(f"CIFAR-100-MH stores each value in one byte; heads {too_many} have more than 256 classes")
        splits = {"train": ["train", "val"], "test": ["test"]}
        with new_folder(Path(out), "CIFAR-100-MH") as folder:
            counts = {}
            for file_split, names in splits.items():
                parts = [self.rows(source.open(name)) for name in names]
                pixels = np.concatenate([p["stim"] for p in parts]).astype(np.uint8, copy=False)
                values = np.stack([np.concatenate([p[h] for p in parts]) for h in meta.heads], axis=1).astype(np.uint8)
                target = folder / BATCH_FILES[file_split]
                if variant == "binary":
                    encode_records(pixels, values).tofile(target)
                else:
                    target.write_bytes(pickle_records(pixels, values))
                counts[file_split] = len(pixels)
            self._write_info(folder, meta, counts)

    @staticmethod
    def _write_info(folder: Path, meta: DatasetMeta, counts: dict[str, int]) -> None:
        write_info(folder, DatasetInfo(
            dataset_name=meta.name,
            n_samples=counts["train"] + counts["test"],
            train_samples=counts["train"],
            test_samples=counts["test"],
            parameter_names=list(meta.heads),
            parameter_mappings={h: ParameterMapping(min=0, max=n - 1, description=f"{meta.name} {h}", scale="categorical")
                                for h, n in meta.heads.items()},
        ))

    def inspect(self, path: Path) -> dict[str, Any]:
        fmt = Cifar100MH(str(path))
        info, stats = fmt.info, fmt.statistics()
        return {
            "format": "cifar100mh",
            "dataset_name": info.dataset_name,
            "n_samples": {split: stats[split]["n_samples"] for split in BATCH_FILES},
            "image_shape": list(IMAGE_SHAPE),
            "heads": {name: {**fmt.parameter_info(name), "class_distribution": {
                split: stats[split]["heads"][name]["class_distribution"] for split in BATCH_FILES}}
                for name in info.parameter_names},
        }

    def validate(self, path: Path) -> list[str]:
        try:
            info = read_info(Path(path))
        except DataError as exc:
            return [str(exc)]
        problems: list[str] = []
        for split, name in BATCH_FILES.items():
            records, found = read_batch(Path(path) / name, info, split)
            problems += found
            if records is not None and not len(records.values) and not found:
                problems.append(f"{Path(path) / name}: no records; a run needs at least one {split} record")
        return problems
