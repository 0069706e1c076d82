"""What one sample of a shard holds, and how samples become arrays and batches.

A sample holds ``stim`` (``stim.npy``, or an image: ``stim.png``, ``png``, ``stim.jpg``,
``jpg``, ``jpeg``), one text label per head (``cls`` for the first head, ``<head>.cls``
for others) and any other ``<name>.npy`` field (``responses.npy``, ``contrast.npy``). A
stored stim of axes ``HW`` becomes ``(1, H, W)`` and ``THW`` becomes ``(T, 1, H, W)``
(reshapes, no copy), so batches come in the core's layouts (``CHW``, ``TCHW``).

Every sample is checked against the dataset's expectations (keys, shapes, dtypes, label
range) as it is decoded: a bad sample is a :class:`BadSample` naming its shard and key,
never a collation error or a device-side assert later.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from core import ConfigError, DataError
from plugins.webdataset.npy import load_npy

if TYPE_CHECKING:
    import torch

    from plugins.webdataset.sidecar import Sidecar

STIM_KEYS = ("stim.npy", "stim.png", "png", "stim.jpg", "jpg", "jpeg")
STORED_AXES = ("HW", "CHW", "THW", "TCHW")


class BadSample(DataError):
    """One sample that cannot be read like the dataset's others."""


def core_layout(shape: tuple[int, ...], axes: str) -> tuple[tuple[int, ...], str]:
    """The core's layout of a stored stim: ``HW`` -> ``(1, H, W)`` CHW, ``THW`` -> ``(T, 1, H, W)`` TCHW."""
    if axes == "HW":
        return (1, *shape), "CHW"
    if axes == "THW":
        return (shape[0], 1, *shape[1:]), "TCHW"
    return tuple(shape), axes


@dataclass(frozen=True)
class SampleSpec:
    """What every sample of a dataset holds; ``source`` says where that was read (for messages)."""

    stim_shape: tuple[int, ...]  # one stored stim
    stim_axes: str
    stim_dtype: str
    heads: dict[str, tuple[str, int]]  # head: (member holding its label, classes)
    fields: dict[str, tuple[tuple[int, ...], str]]  # name: (shape, dtype) of <name>.npy
    source: str

    @property
    def layout(self) -> tuple[tuple[int, ...], str]:
        return core_layout(self.stim_shape, self.stim_axes)

    def decode(self, sample: dict[str, Any]) -> dict[str, Any]:
        """Arrays (stim in the core's layout), one int per head; BadSample if it differs."""
        where = f"shard {sample.get('__url__')}, sample '{sample.get('__key__')}'"
        stim = _stim(sample, where, grey=len(self.stim_shape) == 2)
        if stim.shape != self.stim_shape or stim.dtype != self.stim_dtype:
            raise BadSample(f"{where}: stim is {stim.dtype} {stim.shape}, the dataset's samples are "
                            f"{self.stim_dtype} {self.stim_shape} (from {self.source})")
        decoded: dict[str, Any] = {"stim": stim.reshape(self.layout[0])}
        for head, (member, classes) in self.heads.items():
            decoded[head] = _label(sample, member, head, classes, where)
        for name, (shape, dtype) in self.fields.items():
            array = _npy(sample, f"{name}.npy", where)
            if array.shape != shape or array.dtype != dtype:
                raise BadSample(f"{where}: {name}.npy is {array.dtype} {array.shape}, the dataset's samples are "
                                f"{dtype} {shape} (from {self.source})")
            _check_values(name, array, where)
            decoded[name] = array
        return decoded

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """One batch dict: ``stim`` stacked as stored (uint8), heads int64, fields as stored."""
        import torch

        batch = {"stim": torch.from_numpy(np.stack([s["stim"] for s in samples]))}
        for head in self.heads:
            batch[head] = torch.tensor([s[head] for s in samples], dtype=torch.int64)
        for name in self.fields:
            batch[name] = torch.from_numpy(np.stack([s[name] for s in samples]))
        return batch


def spec_from_sidecar(sidecar: Sidecar, source: str) -> SampleSpec:
    """What a dataset holds, as its ``dataset_info.json`` (at ``source``) says."""
    heads = {head: (sidecar.head_keys.get(head, "cls"), n) for head, n in sidecar.heads.items()}
    return SampleSpec(sidecar.stim_shape, sidecar.stim_axes, sidecar.stim_dtype, heads, sidecar.fields, source)


def spec_from_sample(sample: dict[str, Any], stim_axes: str | None, num_classes: int | None) -> SampleSpec:
    """What a dataset holds, read from its first sample (shards without a sidecar). Its label
    (``cls``) becomes the head ``label``, whose class count only the ``num_classes`` option can give."""
    url = sample.get("__url__")
    where = f"shard {url}, sample '{sample.get('__key__')}'"
    source = f"the first sample of shard {url}"
    stim = _stim(sample, where, grey=None)
    if stim_axes is None:
        stim_axes = _default_axes(stim.shape, where)
    elif len(stim_axes) != stim.ndim:
        raise DataError(f"{where}: stim has shape {stim.shape}, which stim_axes '{stim_axes}' does not describe "
                        f"(set stim_axes to one of {', '.join(a for a in STORED_AXES if len(a) == stim.ndim)})")
    heads = {}
    if "cls" in sample:
        if num_classes is None:
            raise ConfigError("data.format.webdataset.num_classes", f"the shards have no dataset_info.json, so the "
                              f"number of classes of their label (cls, head 'label') is unknown ({source})",
                              fix="set num_classes in the format's options (e.g. num_classes: 10), or write the shards "
                                  "with core-data convert --to webdataset, which records it")
        heads["label"] = ("cls", num_classes)
    fields = {}
    for member in sorted(sample):
        if member.endswith(".npy") and member != "stim.npy":
            array = _npy(sample, member, where)
            fields[member[: -len(".npy")]] = (array.shape, str(array.dtype))
    return SampleSpec(stim.shape, stim_axes, str(stim.dtype), heads, fields, source)


def _default_axes(shape: tuple[int, ...], where: str) -> str:
    if len(shape) == 2:
        return "HW"
    if len(shape) == 3 and shape[0] in (1, 3):
        return "CHW"
    if len(shape) == 4:
        return "TCHW"
    if len(shape) == 3:
        raise DataError(f"{where}: stim has shape {shape}: channels (CHW) or frames (THW)? "
                        "Set the format option stim_axes: CHW or THW")
    raise DataError(f"{where}: stim has shape {shape}; samples are (H, W), (C, H, W), (T, H, W) or (T, C, H, W)")


def _members(sample: dict[str, Any]) -> str:
    return ", ".join(name for name in sample if not name.startswith("__")) or "nothing"


def _npy(sample: dict[str, Any], member: str, where: str) -> np.ndarray:
    data = sample.get(member)
    if data is None:
        raise BadSample(f"{where}: no {member}; the sample holds {_members(sample)}")
    try:
        return load_npy(data)
    except ValueError as exc:
        raise BadSample(f"{where}: {member}: {exc}") from None


def _stim(sample: dict[str, Any], where: str, grey: bool | None) -> np.ndarray:
    """The stored stim; an image is read as grey (H, W) or RGB (3, H, W) (``grey=None``: as stored)."""
    member = next((key for key in STIM_KEYS if key in sample), None)
    if member is None:
        raise BadSample(f"{where}: no stim (stim.npy, or an image: {', '.join(STIM_KEYS[1:])}); "
                        f"the sample holds {_members(sample)}")
    if member == "stim.npy":
        return _npy(sample, member, where)
    try:
        from PIL import Image
    except ImportError:
        raise DataError(f"{where}: stim is a {member} image, which needs Pillow: pip install pillow") from None
    try:
        with Image.open(io.BytesIO(sample[member])) as image:
            if grey is None:
                grey = image.mode == "L"
            pixels = np.asarray(image.convert("L" if grey else "RGB"))
    except (OSError, ValueError) as exc:  # PIL's UnidentifiedImageError is an OSError
        raise BadSample(f"{where}: {member} is not a readable image ({exc})") from None
    return pixels if grey else pixels.transpose(2, 0, 1)


def _check_values(name: str, array: np.ndarray, where: str) -> None:
    """What training would choke on: a non-finite float (a NaN loss), a contrast outside [0, 1]."""
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        value = array[~np.isfinite(array)].flat[0]
        raise BadSample(f"{where}: {name}.npy holds {value!s}; {name} must be finite numbers")
    outside = (array < 0) | (array > 1) if name == "contrast" and array.dtype.kind in "iuf" else None
    if outside is not None and outside.any():
        raise BadSample(f"{where}: contrast.npy holds {array[outside].flat[0]!s}, outside [0, 1] (contrast is a "
                        "fraction: 0.5 for 50%)")


def _label(sample: dict[str, Any], member: str, head: str, classes: int, where: str) -> int:
    data = sample.get(member)
    if data is None:
        raise BadSample(f"{where}: no {member} (the label of head '{head}'); the sample holds {_members(sample)}")
    try:
        value = int(data)
    except ValueError:
        raise BadSample(f"{where}: {member} holds {data[:20]!r}, not an integer label") from None
    if not 0 <= value < classes:
        raise BadSample(f"{where}: label {value} of head '{head}' ({member}) is outside [0, {classes})")
    return value
