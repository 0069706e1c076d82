"""What one sample of a shard holds, and how samples become arrays and batches.

A sample holds ``stim`` (``stim.npy``, or an image: ``stim.png``, ``png``, ``stim.jpg``,
``jpg``, ``jpeg``), one text label per head (``cls`` for the first head, ``<head>.cls``
for others) and any other ``<name>.npy`` field (``responses.npy``, ``contrast.npy``). A
stored stim of axes ``HW`` becomes ``(1, H, W)`` and ``THW`` becomes ``(T, 1, H, W)``
(reshapes, no copy), so batches come in the core's layouts (``CHW``, ``TCHW``).

The format option ``keys`` names other members: ``{stim: images, responses: voxels, <head>:
cls}`` reads the stim from ``images.npy`` (or ``images.png``, ``.jpg``, ``.jpeg``), the
field ``responses`` from ``voxels.npy`` and the head's label from ``cls`` (a member's full
name, or its name without the extension). With ``keys``, a batch carries the fields it names.

Every sample is checked against the dataset's expectations (keys, shapes, dtypes, label
range) as it is decoded: a bad sample is a :class:`BadSample` naming its shard and key,
never a collation error or a device-side assert later.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from core import ConfigError, DataError
from plugins.webdataset.npy import load_npy

if TYPE_CHECKING:
    import torch

    from plugins.webdataset.sidecar import Sidecar

STIM_KEYS = ("stim.npy", "stim.png", "png", "stim.jpg", "jpg", "jpeg")
IMAGE_EXTENSIONS = ("npy", "png", "jpg", "jpeg")
FIELD_ROLES = ("stim", "responses", "contrast")  # keys of the option ``keys`` that are not heads
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
    stim_member: str | None = None  # the stim's member (without extension), when the option keys names it
    members: dict[str, str] = field(default_factory=dict)  # field: its member, when not <field>.npy

    @property
    def layout(self) -> tuple[tuple[int, ...], str]:
        return core_layout(self.stim_shape, self.stim_axes)

    def decode(self, sample: dict[str, Any]) -> dict[str, Any]:
        """Arrays (stim in the core's layout), one int per head; BadSample if it differs."""
        where = f"shard {sample.get('__url__')}, sample '{sample.get('__key__')}'"
        stim = _stim(sample, where, grey=len(self.stim_shape) == 2, member=self.stim_member)
        if stim.shape != self.stim_shape or stim.dtype != self.stim_dtype:
            raise BadSample(f"{where}: stim is {stim.dtype} {stim.shape}, the dataset's samples are "
                            f"{self.stim_dtype} {self.stim_shape} (from {self.source})")
        decoded: dict[str, Any] = {"stim": stim.reshape(self.layout[0])}
        for head, (member, classes) in self.heads.items():
            decoded[head] = _label(sample, member, head, classes, where)
        for name, (shape, dtype) in self.fields.items():
            member = self.members.get(name, f"{name}.npy")
            array = _npy(sample, member, where)
            if array.shape != shape or array.dtype != dtype:
                raise BadSample(f"{where}: {member} is {array.dtype} {array.shape}, the dataset's samples are "
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


def spec_from_sidecar(sidecar: Sidecar, source: str, keys: dict[str, str] | None = None) -> SampleSpec:
    """What a dataset holds, as its ``dataset_info.json`` (at ``source``) says; ``keys`` renames members."""
    keys = keys or {}
    unknown = [key for key in keys if key != "stim" and key not in sidecar.heads and key not in sidecar.fields]
    if unknown:
        raise DataError(f"{source}: the format option keys.{unknown[0]} names no field or head of the dataset (heads: "
                        f"{', '.join(sidecar.heads) or 'none'}; fields: {', '.join(sidecar.fields) or 'none'})")
    heads = {head: (keys.get(head, sidecar.head_keys.get(head, "cls")), n) for head, n in sidecar.heads.items()}
    members = {name: _with_extension(keys[name], "npy") for name in sidecar.fields if name in keys}
    return SampleSpec(sidecar.stim_shape, sidecar.stim_axes, sidecar.stim_dtype, heads, sidecar.fields, source,
                      keys.get("stim"), members)


def _with_extension(member: str, extension: str) -> str:
    return member if "." in member else f"{member}.{extension}"


def _named(sample: dict[str, Any], key: str, member: str, extensions: tuple[str, ...], where: str) -> str:
    """The member the option ``keys.<key>`` names (its full name, or its name without extension)."""
    found = next((m for m in (member, *(f"{member}.{e}" for e in extensions)) if m in sample), None)
    if found is None:
        raise DataError(f"{where}: the format option keys.{key} names '{member}', which the sample does not hold (it "
                        f"holds: {_members(sample)}); set keys.{key} to one of those")
    return found


def spec_from_sample(sample: dict[str, Any], stim_axes: str | None, num_classes: int | None,
                     keys: dict[str, str] | None = None) -> SampleSpec:
    """What a dataset holds, read from its first sample (shards without a sidecar). Its label
    (``cls``, or the member ``keys`` names for a head) becomes the head ``label`` (or the
    head named in ``keys``), whose class count only the ``num_classes`` option can give."""
    url = sample.get("__url__")
    where = f"shard {url}, sample '{sample.get('__key__')}'"
    source = f"the first sample of shard {url}"
    keys = keys or {}
    for key, member in keys.items():
        _named(sample, key, member, IMAGE_EXTENSIONS if key == "stim" else ("npy",) if key in FIELD_ROLES else ("cls",),
               where)
    stim = _stim(sample, where, grey=None, member=keys.get("stim"))
    if stim_axes is None:
        stim_axes = _default_axes(stim.shape, where)
    elif len(stim_axes) != stim.ndim:
        raise DataError(f"{where}: stim has shape {stim.shape}, which stim_axes '{stim_axes}' does not describe "
                        f"(set stim_axes to one of {', '.join(a for a in STORED_AXES if len(a) == stim.ndim)})")
    named_heads = {key: _named(sample, key, m, ("cls",), where) for key, m in keys.items() if key not in FIELD_ROLES}
    labels = named_heads or ({"label": "cls"} if "cls" in sample else {})
    heads = {}
    for head, member in labels.items():
        if num_classes is None:
            raise ConfigError("data.format.webdataset.num_classes", f"the shards have no dataset_info.json, so the "
                              f"number of classes of their label ({member}, head '{head}') is unknown ({source})",
                              fix="set num_classes in the format's options (e.g. num_classes: 10), or write the shards "
                                  "with core-data convert --to webdataset, which records it")
        heads[head] = (member, num_classes)
    if keys:  # only the fields keys names
        members = {role: _named(sample, role, keys[role], ("npy",), where) for role in FIELD_ROLES[1:] if role in keys}
    else:
        members = {m[: -len(".npy")]: m for m in sorted(sample) if m.endswith(".npy") and m != "stim.npy"}
    fields = {}
    for name, member in members.items():
        array = _npy(sample, member, where)
        fields[name] = (array.shape, str(array.dtype))
    renamed = {name: member for name, member in members.items() if member != f"{name}.npy"}
    return SampleSpec(stim.shape, stim_axes, str(stim.dtype), heads, fields, source, keys.get("stim"), renamed)


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


def _stim(sample: dict[str, Any], where: str, grey: bool | None, member: str | None = None) -> np.ndarray:
    """The stored stim (from ``member``, with or without extension, when given); an image is
    read as grey (H, W) or RGB (3, H, W) (``grey=None``: as stored)."""
    candidates = STIM_KEYS if member is None else (member, *(f"{member}.{e}" for e in IMAGE_EXTENSIONS))
    found = next((key for key in candidates if key in sample), None)
    if found is None:
        raise BadSample(f"{where}: no stim ({candidates[0]}, or an image: {', '.join(candidates[1:])}); "
                        f"the sample holds {_members(sample)}")
    member = found
    if member.endswith("npy"):
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
