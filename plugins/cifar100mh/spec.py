"""The CIFAR-100-MH dataset description (``cifar100mh_dataset_info.json``), checked.

A dataset is a folder with this JSON file and two batch files, ``train_batch`` and
``test_batch`` (see ``docs/formats/cifar100mh.md``). Each parameter is one head with
``max - min + 1`` classes; a stored value ``v`` is the class ``v - min``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydantic

from core import DataError
from core.files import write_atomic

INFO_FILE = "cifar100mh_dataset_info.json"
BATCH_FILES = {"train": "train_batch", "test": "test_batch"}
IMAGE_SIZE = "32x32x3"
IMAGE_SHAPE = (3, 32, 32)
PIXELS = 3 * 32 * 32


class ParameterMapping(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")

    min: int = pydantic.Field(ge=0, le=255)
    max: int = pydantic.Field(ge=0, le=255)
    description: str = ""
    scale: str = "linear"

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> ParameterMapping:
        if self.max < self.min:
            raise ValueError(f"max {self.max} is below min {self.min}")
        return self

    @property
    def classes(self) -> int:
        return self.max - self.min + 1


class DatasetInfo(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")

    format: str = "CIFAR-100-MH"
    version: str = "1.0"
    dataset_name: str
    n_samples: int = pydantic.Field(ge=0)
    train_samples: int = pydantic.Field(ge=0)
    test_samples: int = pydantic.Field(ge=0)
    image_size: str = IMAGE_SIZE
    parameter_names: list[str] = pydantic.Field(min_length=1, max_length=255)
    parameter_mappings: dict[str, ParameterMapping]

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> DatasetInfo:
        if self.image_size != IMAGE_SIZE:
            raise ValueError(f"image_size is '{self.image_size}'; CIFAR-100-MH records hold {IMAGE_SIZE} images")
        if self.n_samples != self.train_samples + self.test_samples:
            raise ValueError(f"n_samples {self.n_samples} != train_samples {self.train_samples} + test_samples {self.test_samples}")
        if len(set(self.parameter_names)) != len(self.parameter_names):
            raise ValueError("parameter_names has duplicates")
        missing = [name for name in self.parameter_names if name not in self.parameter_mappings]
        if missing:
            raise ValueError(f"parameter_mappings lacks {missing}")
        return self

    @property
    def heads(self) -> dict[str, int]:
        """``{parameter: classes}`` in ``parameter_names`` order."""
        return {name: self.parameter_mappings[name].classes for name in self.parameter_names}

    def samples(self, split: str) -> int:
        return self.train_samples if split == "train" else self.test_samples


def read_info(root: Path) -> DatasetInfo:
    """The checked description of the dataset in ``root``, or a DataError naming the file."""
    path = Path(root) / INFO_FILE
    if not Path(root).is_dir():
        raise DataError(f"{root}: no such dataset folder (a CIFAR-100-MH dataset is a folder holding {INFO_FILE})")
    if not path.is_file():
        raise DataError(f"{path}: metadata file missing; every CIFAR-100-MH dataset folder holds {INFO_FILE}")
    try:
        raw: Any = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON: {exc}") from None
    try:
        return DatasetInfo.model_validate(raw)
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise DataError(f"{path}: {where}: {first['msg']}") from None


def write_info(root: Path, info: DatasetInfo) -> None:
    write_atomic(Path(root) / INFO_FILE, json.dumps(info.model_dump(), indent=2) + "\n")
