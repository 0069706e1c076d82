"""The ``webdataset`` dataset tool: ``core-data convert --to webdataset`` from any map-style
format, and ``inspect`` / ``validate`` of shard folders.

A converted dataset is a folder of ``{split}-{i:06d}.tar`` shards of ``shard_size`` samples
(``stim.npy`` as the source stores it, ``cls`` for the first head and ``<head>.cls`` for
others, ``<field>.npy`` for every other array: ``responses.npy``, ``contrast.npy``) and
``dataset_info.json`` (``plugins.webdataset.sidecar``). The folder is written under a hidden
temporary name and renamed when complete (:func:`core.files.new_folder`): a killed convert
leaves no folder that looks like a dataset.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from core import SPLITS, ConfigError, DataError, DataFormat, DatasetMeta, DatasetTool, DiskSplit, Split
from core.files import new_folder
from plugins.webdataset.samples import STORED_AXES, SampleSpec, spec_from_sample, spec_from_sidecar
from plugins.webdataset.sidecar import SIDECAR, Sidecar, read_sidecar, write_sidecar
from plugins.webdataset.tarfiles import ShardError, first_sample, shard_samples

log = logging.getLogger("core.webdataset")

CHUNK = 256  # samples read from the source at a time
MAX_PROBLEMS_PER_SHARD = 20


class WebDatasetTool(DatasetTool):
    def recognises(self, path: Path) -> bool:
        return (Path(path) / SIDECAR).is_file()

    def write(self, source: DataFormat, out: Path, shard_size: int = 1000) -> None:
        """``shard_size``: samples per shard (the last shard of a split may hold fewer)."""
        if shard_size < 1:
            raise ConfigError("--to-option shard_size", f"shard_size must be at least 1, not {shard_size}")
        meta = source.meta()
        if meta.stim_axes not in STORED_AXES:
            raise DataError(f"webdataset shards store stim as {', '.join(STORED_AXES)}; '{meta.name}' has {meta.stim_axes}")
        head_keys = {head: "cls" if i == 0 else f"{head}.cls" for i, head in enumerate(meta.heads)}
        shards: dict[str, dict[str, int]] = {}
        fields: dict[str, tuple[tuple[int, ...], str]] = {}
        with new_folder(Path(out), "the shards") as folder:
            for split in SPLITS:
                shards[split], found = _write_split(source.open(split), split, folder, shard_size, meta, head_keys)
                fields = fields or found
                if found and found != fields:
                    raise DataError(f"'{meta.name}': the {split} split holds fields {found}, the train split {fields}")
                log.info(f"webdataset: wrote {sum(shards[split].values())} {split} samples in {len(shards[split])} shard(s)")
            write_sidecar(folder, Sidecar(meta.name, tuple(meta.stim_shape), meta.stim_axes, meta.stim_dtype,
                                          dict(meta.heads), head_keys, fields, shards))

    def inspect(self, path: Path) -> dict[str, Any]:
        path = Path(path)
        sidecar = read_sidecar(path) if path.is_dir() else None
        if sidecar is None:
            counts = {str(shard): sum(1 for _ in shard_samples(str(shard))) for shard in _shard_files(path)}
            return {"format": "webdataset", "sidecar": None, "shards": counts, "samples": sum(counts.values())}
        return {
            "format": "webdataset",
            "dataset_name": sidecar.dataset_name,
            "stim": f"{sidecar.stim_dtype} {list(sidecar.stim_shape)} ({sidecar.stim_axes})",
            "heads": {head: f"{n} classes, in {sidecar.head_keys.get(head, 'cls')}" for head, n in sidecar.heads.items()},
            "fields": {name: f"{dtype} {list(shape)}" for name, (shape, dtype) in sidecar.fields.items()},
            "splits": {split: {"shards": len(counts), "samples": sum(counts.values())}
                       for split, counts in sidecar.shards.items()},
            "shards": {name: n for counts in sidecar.shards.values() for name, n in counts.items()},
        }

    def validate(self, path: Path) -> list[str]:
        path = Path(path)
        try:
            sidecar = read_sidecar(path) if path.is_dir() else None
        except DataError as exc:
            return [str(exc)]
        problems: list[str] = []
        listed: dict[str, int] = {}
        if sidecar is not None:
            listed = {name: n for counts in sidecar.shards.values() for name, n in counts.items()}
            problems += [f"{path / name}: listed in {SIDECAR}, but missing" for name in listed if not (path / name).is_file()]
            problems += [f"{shard}: not listed in {SIDECAR}, so never read" for shard in _shard_files(path)
                         if shard.name not in listed]
            problems += [f"{path / SIDECAR}: the {split} split has no sample (it lists "
                         f"{len(sidecar.shards.get(split, {}))} shard(s)); a run needs at least one sample in each split"
                         for split in SPLITS if not sum(sidecar.shards.get(split, {}).values())]
            shards = [path / name for name in listed if (path / name).is_file()]
        else:
            shards = _shard_files(path)
            if not shards:
                return [f"{path}: no .tar shards"]
        try:
            spec = spec_from_sidecar(sidecar, str(path / SIDECAR)) if sidecar is not None else _spec_of(shards[0])
        except DataError as exc:
            return [*problems, str(exc)]
        for shard in shards:
            problems += _shard_problems(shard, spec, listed.get(shard.name))
        return problems


def _write_split(opened: Any, split: str, out: Path, shard_size: int, meta: DatasetMeta,
                 head_keys: dict[str, str]) -> tuple[dict[str, int], dict[str, tuple[tuple[int, ...], str]]]:
    """Write one split's shards; returns their sample counts and the fields they hold."""
    from webdataset import TarWriter

    if not isinstance(opened, (Split, DiskSplit)):
        raise DataError(f"convert --to webdataset reads map-style formats; '{meta.name}' streams its {split} split")
    n, counts, fields = len(opened), {}, {}
    for shard, start in enumerate(range(0, n, shard_size)):
        name = f"{split}-{shard:06d}.tar"
        stop = min(start + shard_size, n)
        # mtime fixed: the same data gives the same bytes, and tarfile writes no pax header per member
        # (it does for a fractional mtime), which would double the members a reader parses
        with TarWriter(str(out / name), mtime=0) as writer:
            for index, sample in _samples(opened, start, stop, meta, head_keys):
                fields = fields or {key[:-4]: (value.shape, str(value.dtype)) for key, value in sample.items()
                                    if key.endswith(".npy") and key != "stim.npy"}
                writer.write({"__key__": f"{index:06d}", **sample})
        counts[name] = stop - start
    return counts, fields


def _samples(opened: Split | DiskSplit, start: int, stop: int, meta: DatasetMeta,
             head_keys: dict[str, str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, members) of samples ``start`` to ``stop``, read from the source a chunk at a time."""
    for chunk in range(start, stop, CHUNK):
        end = min(chunk + CHUNK, stop)
        arrays = DatasetTool.rows(opened, chunk, end)
        stim = arrays.pop("stim")
        if stim[0].size != int(np.prod(meta.stim_shape)):
            raise DataError(f"'{meta.name}': a stim sample has shape {stim.shape[1:]}, its metadata says {meta.stim_shape}")
        labels = {head: arrays.pop(head) for head in head_keys}
        for i in range(end - chunk):
            sample: dict[str, Any] = {"stim.npy": stim[i].reshape(meta.stim_shape)}
            sample.update({head_keys[head]: int(values[i]) for head, values in labels.items()})
            sample.update({f"{name}.npy": np.asarray(values[i]) for name, values in arrays.items()})
            yield chunk + i, sample


def _shard_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.name.endswith((".tar", ".tar.gz", ".tgz")))


def _spec_of(shard: Path) -> SampleSpec:
    """Expectations from a shard's first sample (no sidecar): class counts unknown, so labels are only
    checked to be integers; a 3-axis stim is taken as CHW (the shapes are what is compared)."""
    sample = first_sample(str(shard))
    try:
        return spec_from_sample(sample, None, num_classes=2**62)
    except DataError:
        return spec_from_sample(sample, "CHW", num_classes=2**62)


def _shard_problems(shard: Path, spec: SampleSpec, expected: int | None) -> list[str]:
    """Every problem of one shard: unreadable parts, bad samples, repeated keys, a wrong count."""
    problems, bad, count, keys = [], 0, 0, set()
    try:
        for sample in shard_samples(str(shard)):
            count += 1
            key = sample["__key__"]
            found: list[str] = []
            if key in keys:
                found.append(f"shard {shard}, sample '{key}': the key appears twice (samples must be contiguous)")
            keys.add(key)
            try:
                spec.decode(sample)
            except DataError as exc:
                found.append(str(exc))
            bad += bool(found)
            if bad <= MAX_PROBLEMS_PER_SHARD:
                problems += found
    except ShardError as exc:
        return [*problems, str(exc)]
    if bad > MAX_PROBLEMS_PER_SHARD:
        problems.append(f"shard {shard}: {bad - MAX_PROBLEMS_PER_SHARD} more bad samples (only the first "
                        f"{MAX_PROBLEMS_PER_SHARD} are listed)")
    if expected is not None and count != expected:
        problems.append(f"shard {shard} holds {count} samples, {SIDECAR} says {expected}")
    return problems
