"""The ``ffcv`` dataset tool: ``core-data convert --to ffcv`` from any map-style format,
``inspect`` and ``validate`` of .beton files (a folder written by convert, or one file).

A converted dataset is a folder: ``train.beton``, ``val.beton``, ``test.beton`` (images as
``stim``, one integer field per head, NDArray fields for other arrays such as responses)
and ``ffcv_dataset_info.json`` with what the heads need (name and classes per head).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core import SPLITS, DataError, DataFormat, DatasetTool, Split
from core.files import write_atomic
from plugins.ffcv.beton import SIDECAR, Beton, read_beton, read_sidecar

BETON = "{split}.beton"


class _Samples:
    """An indexable view FFCV's writer can read: (image HWC, label per head, arrays...)."""

    def __init__(self, split: Split, heads: list[str], arrays: list[str]) -> None:
        self.stim, self.heads = split.fields["stim"], [split.fields[h] for h in heads]
        self.arrays = [split.fields[a] for a in arrays]

    def __len__(self) -> int:
        return len(self.stim)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        image = np.ascontiguousarray(np.asarray(self.stim[i]).transpose(1, 2, 0))
        return (image, *(int(h[i]) for h in self.heads), *(np.asarray(a[i]) for a in self.arrays))


class FFCVTool(DatasetTool):
    def recognises(self, path: Path) -> bool:
        path = Path(path)
        return path.suffix == ".beton" or (path / SIDECAR).is_file()

    def write(self, source: DataFormat, out: Path, write_mode: Literal["raw", "jpg", "smart"] = "raw",
              jpeg_quality: int = 90, num_workers: int = 2) -> None:
        from ffcv.fields import IntField, NDArrayField, RGBImageField
        from ffcv.writer import DatasetWriter

        meta = source.meta()
        if len(meta.stim_shape) != 3 or meta.stim_shape[0] != 3 or meta.stim_dtype != "uint8":
            raise DataError(f"FFCV images are 3-channel uint8; '{meta.name}' has {meta.stim_dtype} {meta.stim_shape} "
                            "(for digits: --option channels=3)")
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        heads = list(meta.heads)
        sizes = {}
        for split in SPLITS:
            data = source.open(split)
            if not isinstance(data, Split):
                raise DataError(f"convert --to ffcv reads map-style formats; '{meta.name}' streams its {split} split")
            arrays = sorted(k for k in data.fields if k not in ("stim", *heads))
            fields: dict[str, Any] = {"stim": RGBImageField(write_mode=write_mode, max_resolution=max(meta.stim_shape[1:]),
                                                             jpeg_quality=jpeg_quality)}
            fields.update({h: IntField() for h in heads})
            for name in arrays:
                sample = np.asarray(data.fields[name][0])
                fields[name] = NDArrayField(dtype=sample.dtype, shape=sample.shape)
            DatasetWriter(str(out / BETON.format(split=split)), fields, num_workers=num_workers).from_indexed_dataset(
                _Samples(data, heads, arrays))
            sizes[split] = len(data)
        write_atomic(out / SIDECAR, json.dumps({"dataset_name": meta.name, "image_field": "stim", "heads": meta.heads,
                                                "split_sizes": sizes, "write_mode": write_mode}, indent=2) + "\n")

    def _files(self, path: Path) -> list[Path]:
        path = Path(path)
        return [path] if path.suffix == ".beton" else [path / BETON.format(split=s) for s in SPLITS]

    def inspect(self, path: Path) -> dict[str, Any]:
        sidecar = read_sidecar(Path(path)) if Path(path).is_dir() else None
        files = {}
        for file in self._files(path):
            beton = read_beton(file)
            files[file.name] = {"n_samples": beton.num_samples, "fields": beton.fields,
                                "image_shape": list(beton.image_shape) if beton.image_shape else None}
        return {"format": "ffcv", "files": files, "heads": (sidecar or {}).get("heads")}

    def validate(self, path: Path) -> list[str]:
        problems = []
        try:
            sidecar = read_sidecar(Path(path)) if Path(path).is_dir() else None
        except DataError as exc:
            return [str(exc)]
        for file in self._files(path):
            try:
                beton = read_beton(file)
            except DataError as exc:
                problems.append(str(exc))
                continue
            for head, classes in ((sidecar or {}).get("heads") or {}).items():
                if beton.fields.get(head) != "int":
                    problems.append(f"{file}: the sidecar names head '{head}', but the file has no integer field '{head}'")
                    continue
                values = beton.int_values[head]
                bad = np.flatnonzero((values < 0) | (values >= classes))
                for index in bad[:20]:
                    problems.append(f"{file}: sample {int(index)}: {head} = {int(values[index])} is outside [0, {classes})")
            problems += _nonfinite(beton)
        return problems


def _nonfinite(beton: Beton, rows: int = 4096) -> list[str]:
    """Non-finite values of the float and floating NDArray fields (a NaN response trains to a NaN loss)."""
    problems = []
    for name, values in beton.float_values.items():
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            problems.append(f"{beton.path}: sample {int(bad[0])}: {name} = {values[bad[0]]!s} ({len(bad)} non-finite "
                            f"value(s)); {name} must be finite numbers")
    for name, (_, dtype) in beton.ndarray_data.items():
        if dtype.kind not in "fc":
            continue
        for start in range(0, beton.num_samples, rows):
            values = beton.ndarray_values(name, slice(start, start + rows))
            bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
            if bad.any():
                first = int(np.argmax(bad))
                problems.append(f"{beton.path}: sample {start + first}: {name} holds a non-finite value "
                                f"({values[first][~np.isfinite(values[first])].flat[0]!s}); {name} must be finite numbers")
                break
    return problems
