"""The session layout: one HDF5 file per recording session (docs/formats/sessions.md).

Datasets, all with the trial as first axis: ``stim`` (N x H x W, N x C x H x W or
N x T x H x W; uint8 pixels, or float16/float32 by convention in [0, 1], as MindEye's
``images``), ``responses`` (float32, or float16 read as float32; N x neurons or
N x T x neurons), and optionally ``contrast`` (N, float32), ``label`` (N, int64) and
``split`` (N, uint8: 0 train, 1 val, 2 test). The file attribute ``session`` names the
session (default: the file's stem). The format option ``keys`` reads other names
(``{stim: images, responses: voxels}``: a MindEye-style file as it is); a key that is not a
field's names the label head.

This module reads only headers and attributes, and turns every way a file can be wrong into
one :class:`core.DataError` naming the file and the fix.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from core import DataError

FIELDS = ("stim", "responses", "contrast", "label", "split")
ROLES = ("stim", "responses", "contrast", "split")  # keys of the option ``keys`` that are not heads
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
BLOCK_ROWS = 4096  # trials read at a time when a whole dataset is checked
STIM_DTYPES = ("uint8", "float16", "float32")


@dataclass(frozen=True)
class SessionInfo:
    """What one session file holds, from its headers."""

    path: str
    name: str
    n: int
    sample_shapes: dict[str, tuple[int, ...]]  # per field, one trial's shape as delivered
    stim_axes: str  # "CHW" or "TCHW"
    stim_dtype: str  # one of STIM_DTYPES, as stored (and delivered)
    chunk_rows: dict[str, int | None]  # trials per chunk of each field (None: contiguous)
    chunk_bytes: int  # the largest chunk of any field
    compressed: bool  # any field stored through a compression filter
    label_classes: int | None
    head_name: str
    datasets: dict[str, str]  # each field read (as in sample_shapes) -> its dataset in the file


def expand_paths(paths: str | list[str]) -> list[str]:
    """Files named by ``paths`` (each a file or a glob), sorted within each pattern; a
    pattern matching nothing is an error naming it."""
    found: list[str] = []
    for pattern in [paths] if isinstance(paths, str) else paths:
        matches = sorted(glob.glob(str(Path(pattern).expanduser()))) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise DataError(f"hdf5: the pattern '{pattern}' matches no file (working directory {Path.cwd()}); "
                            "check the path, or write sessions with: core-data make-sessions OUT")
        for match in matches:
            if not Path(match).is_file():
                raise DataError(f"hdf5: session file '{match}' does not exist; check format.hdf5.paths")
        found += [m for m in matches if m not in found]
    if not found:
        raise DataError("hdf5: paths is empty; name at least one session file or glob")
    return found


def open_file(path: str, **cache: int) -> h5py.File:
    """Open a session read-only; an unreadable or truncated file is a :class:`DataError`."""
    try:
        return h5py.File(path, "r", **cache)
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({_first_line(exc)}); the file may be truncated or "
                        "still being copied: copy it again or rewrite it with core-data convert --to hdf5") from None


def dataset_names(keys: dict[str, str] | None) -> tuple[dict[str, str], str | None]:
    """The option ``keys`` as (field -> dataset name, with ``label`` for the head) and the head's name."""
    keys = keys or {}
    heads = [key for key in keys if key not in ROLES]
    names = {field: keys.get(field, field) for field in ROLES}
    names["label"] = keys[heads[0]] if heads else "label"
    return names, heads[0] if heads else None


def _missing(path: str, f: h5py.File, key: str, name: str) -> DataError:
    return DataError(f"{path}: the format option keys.{key} names dataset '{name}', which the file does not have "
                     f"(it has: {sorted(f.keys()) or 'nothing'}); set keys.{key} to one of those")


def read_info(path: str, keys: dict[str, str] | None = None) -> SessionInfo:
    """Check one session's layout and describe it; ``keys`` as the format's option of that name."""
    names, head = dataset_names(keys)
    keys = keys or {}
    with open_file(path) as f:
        for key, name in keys.items():
            if name not in f:
                raise _missing(path, f, key, name)
        if names["stim"] not in f:
            raise DataError(f"{path}: the session has no dataset 'stim' (it has: {sorted(f.keys()) or 'nothing'}); "
                            "a session needs stim (N x H x W, N x C x H x W or N x T x H x W; uint8, float16 or "
                            "float32): name the datasets the file has with the format option keys (e.g. keys: "
                            "{stim: images, responses: voxels})")
        stim = f[names["stim"]]
        if not isinstance(stim, h5py.Dataset):
            raise DataError(f"{path}: '{names['stim']}' is a group, not a dataset; a session's stim is one dataset "
                            "(N x H x W, N x C x H x W or N x T x H x W): name it with the format option keys")
        if str(stim.dtype) not in STIM_DTYPES:
            raise DataError(f"{path}: stim is {stim.dtype}; the session layout stores uint8 pixels or float16/float32 "
                            "values (in [0, 1] by convention): rewrite stim as one of those")
        stim_shape, axes = _stim_sample(path, stim)
        n = stim.shape[0]
        if n == 0:
            raise DataError(f"{path}: the session holds no trial (stim has shape {stim.shape}); a session needs at "
                            "least one trial: remove the file or write its trials")
        shapes = {"stim": stim_shape}
        chunks: dict[str, int | None] = {"stim": stim.chunks[0] if stim.chunks else None}
        chunk_bytes = _chunk_bytes(stim)
        compressed = stim.compression is not None
        for name in FIELDS[1:]:
            if names[name] not in f:
                continue
            data = f[names[name]]
            if not isinstance(data, h5py.Dataset) or data.ndim == 0 or data.shape[0] != n:
                raise DataError(f"{path}: stim has {n} trials (shape {stim.shape}) but {name} has "
                                f"{data.shape[0] if getattr(data, 'ndim', 0) else 'none'} "
                                f"(shape {getattr(data, 'shape', None)}); every dataset's first axis counts trials")
            _check_field(path, name, data)
            shapes[name] = tuple(data.shape[1:])
            chunks[name] = data.chunks[0] if data.chunks else None
            chunk_bytes = max(chunk_bytes, _chunk_bytes(data))
            compressed = compressed or data.compression is not None
        classes = _label_classes(path, f.attrs.get("label_classes"))
        head_name = head or str(f.attrs.get("head_name", "label"))
        if head_name in ROLES:  # a batch holds each under its name: the label would replace it
            raise DataError(f"{path}: the label head is named '{head_name}', the name of a session field; a batch "
                            "could hold only one of them: rename the head (the file's head_name attribute, or the "
                            "format option keys: {label: ...})")
        return SessionInfo(
            path=path,
            name=str(f.attrs.get("session", Path(path).stem)),
            n=n,
            sample_shapes=shapes,
            stim_axes=axes,
            stim_dtype=str(stim.dtype),
            chunk_rows=chunks,
            chunk_bytes=chunk_bytes,
            compressed=compressed,
            label_classes=classes,
            head_name=head_name,
            datasets={name: names[name] for name in shapes},
        )


def _label_classes(path: str, value: object) -> int | None:
    if value is None:
        return None
    number = np.asarray(value)
    if number.ndim == 0 and number.dtype.kind in "iuf" and np.isfinite(number) and number >= 1 \
            and float(number) == int(number):
        return int(number)
    raise DataError(f"{path}: the attribute label_classes is {value!r}; it must be a whole number of classes, at "
                    "least 1 (or absent: then the largest label plus 1)")


def read_blocks(f: h5py.File, path: str, name: str, rows: int = BLOCK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
    """(first trial, values) of dataset ``name``, ``rows`` trials at a time; a block that cannot
    be read (a damaged chunk) is a DataError naming the file, the dataset and the trials."""
    data = f[name]
    for start in range(0, data.shape[0], rows):
        stop = min(start + rows, data.shape[0])
        try:
            block = data[start:stop]
        except (OSError, RuntimeError) as exc:
            raise DataError(unreadable(path, name, start, stop, exc)) from None
        yield start, block


def unreadable(path: str, name: str, start: int, stop: int, exc: BaseException) -> str:
    return (f"{path}: {name} trials {start}..{stop - 1} cannot be read ({_first_line(exc)}); the file is damaged or "
            f"truncated: core-data validate {path} lists every problem; copy the file again or rewrite it")


def check_values(path: str, name: str, start: int, block: np.ndarray, classes: int | None) -> None:
    """What training would choke on in a block of trials of ``name`` (starting at trial
    ``start``): non-finite float stim, responses or contrast, contrast outside [0, 1], labels
    below 0 or at or past ``classes``. Raises a DataError naming the file, the dataset and the
    first bad trial."""
    if name not in ("stim", "responses", "contrast", "label", "split") or not len(block) \
            or (name == "stim" and block.dtype.kind != "f"):
        return
    rows = block.reshape(len(block), -1)
    if name == "split":
        bad = ~np.isin(rows[:, 0], list(SPLIT_CODES.values()))
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(f"{path}: split holds {rows[row][0]!s} at trial {start + row}; use 0 (train), 1 (val) or 2 (test)")
        return
    if name in ("stim", "responses", "contrast"):
        with np.errstate(over="ignore"):  # training reads them as float32: a float64 past its range becomes inf
            read = rows.astype(np.float32) if rows.dtype.kind == "f" and rows.dtype.itemsize > 4 else rows
        bad = ~np.isfinite(read).all(axis=1)
        if bad.any():
            row = int(np.argmax(bad))
            value = rows[row][~np.isfinite(read[row])][0]
            raise DataError(f"{path}: {name} holds {value!s} at trial {start + row} ({int(bad.sum())} such trial(s) in "
                            f"trials {start}..{start + len(block) - 1}); {name} must be finite numbers within float32's "
                            "range (training reads them as float32): fix or remove those trials")
    if name == "contrast":
        bad = (rows < 0) | (rows > 1)
        if bad.any():
            row = int(np.argmax(bad.any(axis=1)))
            raise DataError(f"{path}: contrast holds {rows[row][0]!s} at trial {start + row}, outside [0, 1]; contrast is "
                            "a fraction (0.5 for 50%): divide percentages by 100")
    if name == "label":
        low = rows < 0
        high = rows >= classes if classes is not None else np.zeros_like(low)
        if low.any() or high.any():
            row = int(np.argmax((low | high).any(axis=1)))
            value = int(rows[row][0])
            if value < 0:
                raise DataError(f"{path}: label holds {value} at trial {start + row}; labels are class indices from 0")
            raise DataError(f"{path}: label holds {value} at trial {start + row}, outside [0, {classes}) "
                            f"(label_classes = {classes}); set label_classes above the largest label, or fix the labels")


def _stim_sample(path: str, stim: h5py.Dataset) -> tuple[tuple[int, ...], str]:
    """One trial's stim as delivered: (1, H, W) for N x H x W, (C, H, W), or (T, 1, H, W)."""
    shape = stim.shape
    if len(shape) == 3:
        return (1, *shape[1:]), "CHW"
    if len(shape) == 4:
        axes = str(stim.attrs.get("axes", "NCHW" if shape[1] in (1, 3) else "NTHW"))
        if axes == "NCHW":
            return tuple(shape[1:]), "CHW"
        if axes == "NTHW":
            return (shape[1], 1, *shape[2:]), "TCHW"
        raise DataError(f"{path}: stim's attribute axes is '{axes}'; use 'NCHW' or 'NTHW'")
    raise DataError(f"{path}: stim has shape {shape}; the session layout takes N x H x W, N x C x H x W or N x T x H x W")


def _check_field(path: str, name: str, data: h5py.Dataset) -> None:
    expected = {"responses": ((2, 3), "f"), "contrast": ((1,), "f"), "label": ((1,), "iu"), "split": ((1,), "iu")}
    ndims, kinds = expected[name]
    if data.ndim not in ndims or data.dtype.kind not in kinds:
        raise DataError(f"{path}: {name} has shape {data.shape} and dtype {data.dtype}; the session layout wants "
                        f"{ {'responses': 'N x neurons or N x T x neurons float32 (or float16)', 'contrast': 'N float32', 'label': 'N int64', 'split': 'N uint8 (0 train, 1 val, 2 test)'}[name] }")


def _chunk_bytes(data: h5py.Dataset) -> int:
    return int(np.prod(data.chunks)) * data.dtype.itemsize if data.chunks else 0


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
