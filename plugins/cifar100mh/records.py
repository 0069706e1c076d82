"""Reads CIFAR-100-MH batch files, vectorised (NumPy over the whole file, no per-record Python).

A batch file is either binary, a sequence of records ``[N][id_1][val_1]...[id_N][val_N]``
followed by 3,072 pixel bytes (1,024 red, 1,024 green, 1,024 blue, each 32x32 row-major),
or a pickle in CIFAR's Python-version layout: ``{"data": (n, 3072) uint8, "labels":
(n, 1 + 2N) uint8}``. The two are told apart by content: a pickle starts with the
protocol opcode ``0x80`` and a protocol number 2-5, and is then read only through
:class:`SafeUnpickler`, which admits plain containers, bytes, numbers and NumPy arrays.

Every problem is reported with the file and record index; :func:`read_batch` collects them
all (for ``core-data validate``), :func:`load_batch` raises the first ones as a DataError.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import DataError
from plugins.cifar100mh.spec import IMAGE_SHAPE, PIXELS, DatasetInfo

SHOWN_PER_PROBLEM = 20
_ADMITTED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    # protocol 5 (pickle.dump(..., protocol=5) of an array): np.frombuffer(bytes, dtype).reshape(shape);
    # it builds an array from the pickle's own bytes and runs no code (object arrays cannot be built from bytes)
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.numeric", "_frombuffer"),  # the same, pickled by NumPy 1.x
    ("_codecs", "encode"),  # Python 2 pickles (CIFAR's own) store byte strings through it
}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds plain containers, bytes, numbers and NumPy arrays only;
    any other global is refused before it is imported, so no code runs from data."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ADMITTED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused '{module}.{name}': only containers, bytes, numbers and NumPy arrays are admitted")


def safe_unpickle(path: Path) -> Any:
    """Unpickle ``path`` with :class:`SafeUnpickler`; any failure is a DataError naming the file."""
    try:
        with open(path, "rb") as handle:
            return SafeUnpickler(handle, encoding="latin1").load()
    except Exception as exc:  # arbitrary bytes raise many kinds of errors; all mean "not a valid pickle"
        raise DataError(f"{path}: cannot be read as a pickle: {type(exc).__name__}: {exc}") from None


def is_pickle(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


@dataclass
class Records:
    """``pixels`` (n, 3, 32, 32) uint8 and ``values`` (n, N): stored values in parameter order."""

    pixels: np.ndarray
    values: np.ndarray


class Problems(list):
    """Problem messages, at most ``SHOWN_PER_PROBLEM`` records named per kind of problem."""

    def add_records(self, path: Path, rows: np.ndarray, describe: Any) -> None:
        for row in rows[:SHOWN_PER_PROBLEM]:
            self.append(f"{path}: record {int(row)}: {describe(int(row))}")
        if len(rows) > SHOWN_PER_PROBLEM:
            self.append(f"{path}: ... and {len(rows) - SHOWN_PER_PROBLEM} more records with the same problem")


def read_batch(path: Path, info: DatasetInfo, split: str) -> tuple[Records | None, list[str]]:
    """Parse one batch file; return the records (None if unreadable) and every problem found."""
    problems = Problems()
    if not path.is_file():
        return None, [f"{path}: batch file missing (a CIFAR-100-MH dataset holds train_batch and test_batch)"]
    with open(path, "rb") as handle:
        head = handle.read(2)
    if is_pickle(head):
        try:
            labels, pixels = _from_pickle(path)
        except DataError as exc:
            return None, [str(exc)]
    else:
        labels, pixels = _from_binary(path, len(info.parameter_names), problems)
    values = _check_labels(path, labels, info, problems)
    expected = info.samples(split)
    if len(labels) != expected:
        problems.append(f"{path}: {len(labels)} records, but the metadata says {split}_samples = {expected}")
    return Records(pixels.reshape(-1, *IMAGE_SHAPE), values), list(problems)


def load_batch(path: Path, info: DatasetInfo, split: str) -> Records:
    records, problems = read_batch(path, info, split)
    if problems:
        more = f"\n  ... {len(problems) - 5} more (run core-data validate {path.parent})" if len(problems) > 5 else ""
        raise DataError("\n  ".join(problems[:5]) + more)
    assert records is not None
    return records


def _from_binary(path: Path, n_params: int, problems: Problems) -> tuple[np.ndarray, np.ndarray]:
    record = 1 + 2 * n_params + PIXELS
    size = path.stat().st_size
    raw = np.memmap(path, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
    complete = size // record
    if size % record:
        problems.append(
            f"{path}: record {complete}: truncated: {size % record} of {record} bytes "
            f"(records are 1 + 2 x {n_params} label bytes + {PIXELS} pixel bytes)"
        )
    rows = raw[: complete * record].reshape(complete, record)
    return np.array(rows[:, : 1 + 2 * n_params]), rows[:, 1 + 2 * n_params :]


def _from_pickle(path: Path) -> tuple[np.ndarray, np.ndarray]:
    obj = safe_unpickle(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: the pickle holds a {type(obj).__name__}, not a dict with 'data' and 'labels'")
    obj = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    missing = [key for key in ("data", "labels") if key not in obj]
    if missing:
        raise DataError(f"{path}: the pickle's dict lacks {missing} (it has {sorted(map(str, obj))})")
    data = as_uint8(path, "data", obj["data"], "pixels")
    labels = as_uint8(path, "labels", obj["labels"], "label structures")
    if data.ndim != 2 or data.shape[1] != PIXELS:
        raise DataError(f"{path}: 'data' has shape {data.shape}, expected (n, {PIXELS})")
    if labels.ndim != 2 or len(labels) != len(data):
        raise DataError(f"{path}: 'labels' has shape {labels.shape}, expected ({len(data)}, 1 + 2N)")
    return labels, data


def as_uint8(path: Path, key: str, value: Any, what: str) -> np.ndarray:
    """``value`` as uint8 when it is uint8 already or integers in 0..255; anything else (floats,
    integers out of range, objects) is refused: a cast would silently change it (a float pixel
    in [0, 1] becomes 0, 300 becomes 44)."""
    array = _array(path, key, value)
    if array.dtype == np.uint8 or array.size == 0:  # an empty list is float64 to NumPy
        return array.astype(np.uint8, copy=False)
    fix = f"write {key} as a uint8 array ({what} are bytes, 0 to 255)"
    if array.dtype.kind in "iu":
        if array.min() < 0 or array.max() > 255:
            raise DataError(f"{path}: '{key}' is {array.dtype} with values from {array.min()} to {array.max()}, "
                            f"outside 0..255; {fix}")
        return array.astype(np.uint8)
    if array.dtype.kind == "f":
        span = f" with values from {np.nanmin(array)} to {np.nanmax(array)}" if not np.isnan(array).all() else ""
        raise DataError(f"{path}: '{key}' is {array.dtype}{span}, not uint8: a cast would change the values "
                        f"(a float in [0, 1] becomes 0); {fix}, e.g. (x * 255).round().astype(numpy.uint8) for x in [0, 1]")
    raise DataError(f"{path}: '{key}' is {array.dtype}, not uint8; {fix}")


def as_labels(path: Path, key: str, value: Any) -> np.ndarray:
    """Integer class labels as int64; floats (1.7 would become 1) and other kinds are refused."""
    array = _array(path, key, value)
    if array.dtype.kind not in "iu" and array.size:
        raise DataError(f"{path}: '{key}' is {array.dtype}, not integer labels; write them as integers")
    return array.astype(np.int64)


def _array(path: Path, key: str, value: Any) -> np.ndarray:
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged lists and the like
        raise DataError(f"{path}: '{key}' is not an array: {exc}") from None


def _check_labels(path: Path, labels: np.ndarray, info: DatasetInfo, problems: Problems) -> np.ndarray:
    names = info.parameter_names
    n = len(names)
    values = np.zeros((len(labels), n), dtype=np.uint8)
    if labels.shape[1] != 1 + 2 * n:
        problems.append(f"{path}: label structures have {labels.shape[1]} bytes, expected 1 + 2 x {n} for {names}")
        return values
    counts = labels[:, 0]
    problems.add_records(path, np.flatnonzero(counts != n), lambda r: f"N is {counts[r]}, but the metadata names {n} parameters")
    ids, vals = labels[:, 1::2], labels[:, 2::2]
    past = (ids >= n).any(axis=1)
    problems.add_records(path, np.flatnonzero(past), lambda r: f"parameter id {int(ids[r].max())} is past the {n} parameter names")
    once = (np.sort(ids, axis=1) == np.arange(n)).all(axis=1)
    problems.add_records(path, np.flatnonzero(~once & ~past), lambda r: f"parameter ids {ids[r].tolist()} do not name each parameter once")
    rows = np.flatnonzero(once)
    values[rows[:, None], ids[rows]] = vals[rows]
    low = np.array([info.parameter_mappings[name].min for name in names])
    high = np.array([info.parameter_mappings[name].max for name in names])
    outside = ((values < low) | (values > high)) & once[:, None]
    for j, name in enumerate(names):
        problems.add_records(path, np.flatnonzero(outside[:, j]),
                             lambda r, j=j, name=name: f"{name} = {values[r, j]} is outside its range [{low[j]}, {high[j]}]")
    return values


def encode_records(pixels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(n, 3, 32, 32) pixels and (n, N) values -> (n, 1 + 2N + 3072) binary records."""
    n, n_params = values.shape
    labels = np.empty((n, 1 + 2 * n_params), dtype=np.uint8)
    labels[:, 0] = n_params
    labels[:, 1::2] = np.arange(n_params, dtype=np.uint8)
    labels[:, 2::2] = values
    return np.concatenate([labels, pixels.reshape(n, PIXELS)], axis=1)


def pickle_records(pixels: np.ndarray, values: np.ndarray) -> bytes:
    """The Python-version variant: a pickled ``{"data": ..., "labels": ...}`` dict."""
    records = encode_records(pixels, values)
    buffer = io.BytesIO()
    pickle.dump({"data": records[:, -PIXELS:].copy(), "labels": records[:, :-PIXELS].copy()}, buffer, protocol=4)
    return buffer.getvalue()
