"""Class groups: keep some classes of a format's label head and number them 0..k-1.

Every format with label heads takes, beside its own options, ``classes``, ``group``,
``groups`` and ``label_map`` (:mod:`plugins.class_groups.maps`): the core takes these
options off before the format is built and wraps it in :class:`ClassSubset` (a
:class:`core.FormatWrapper`): ``meta()`` reports the reduced heads, ``open()`` drops the
other samples and renumbers the labels on the host, once per split (no per-batch work).

Split sizes: ``meta()`` counts them from the format's ``labels(split)`` when it has one
(labels only: cheap enough for ``--dry-run``); otherwise it reports the whole splits, an
upper bound (the memory plan then over-counts), and a split's size is exact once it opens.
A streamed split (webdataset, ffcv) is refused when it opens.
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError
from core.files import write_atomic
from core.kinds import DataFormat, DatasetMeta, DiskSplit, FormatWrapper, Split, Stream, wrappers
from plugins.class_groups.maps import ClassMap, class_maps

LABEL_MAP_FILE = "label_map.json"


class ClassSubset(FormatWrapper):
    """Keeps the samples of the chosen classes of a format's label heads and numbers those classes 0..k-1.

    ``classes``: the classes to keep, ids or names (``[0, 1, 7]``, ``[cat, dog]``), of the first
    head, or ``{head: [...]}``. ``group``: the classes of a named group (of the file ``groups``
    or of the metadata's groups), or ``{head: NAME}``. ``groups``: a YAML file of groups, ``NAME:
    [ids or names]`` each. ``label_map``: ``{old: new}`` ids of the first head, or ``{head: {old:
    new}}``; several old ids may share a new one. A head is selected by one of ``classes``,
    ``group`` and ``label_map`` at most; null is not given.
    """

    def __init__(self, fmt: DataFormat, path: str, classes: Any = None, group: Any = None, groups: Any = None,
                 label_map: Any = None) -> None:
        super().__init__(fmt, path)
        given = {"classes": classes, "group": group, "groups": groups, "label_map": label_map}
        self.options = {**{key: value for key, value in given.items() if value is not None}, "path": path}
        self._checked = False

    @cached_property
    def inner(self) -> DatasetMeta:
        return self.fmt.meta()

    @cached_property
    def maps(self) -> dict[str, ClassMap]:
        return class_maps(self.options, self.inner)

    def class_maps(self) -> dict[str, ClassMap]:
        return self.maps

    def meta(self) -> DatasetMeta:
        return self.reduced

    @cached_property
    def reduced(self) -> DatasetMeta:
        inner, maps = self.inner, self.maps
        counted = {split: self.fmt.labels(split) for split in inner.split_sizes}
        exact = all(labels is not None for labels in counted.values())
        if exact:
            self._check_present(counted.get("train") or {})
        sizes = {split: len(self._keep(labels)) for split, labels in counted.items()} if exact else inner.split_sizes
        names = {**inner.extra.get("class_names", {}), **{h: m.new_names() for h, m in maps.items() if m.names}}
        extra = {k: v for k, v in inner.extra.items() if k != "groups"} | {
            "class_names": names, "label_map": {h: m.describe() for h, m in maps.items()},
            "split_sizes": "exact" if exact else "at most (known when each split opens)"}
        return replace(inner, heads={**inner.heads, **{h: m.size for h, m in maps.items()}}, split_sizes=sizes,
                       extra=extra)

    def _keep(self, labels: dict[str, np.ndarray]) -> np.ndarray:
        """Indices of the samples whose every selected head keeps its class."""
        keep = np.ones(len(next(iter(labels.values()))), dtype=bool)
        for head, mapping in self.maps.items():
            keep &= mapping.apply(labels[head]) >= 0
        return np.flatnonzero(keep)

    def _check_present(self, labels: dict[str, np.ndarray]) -> None:
        """Every chosen class has a training sample (a class absent from the data is a typo, or the wrong data)."""
        if self._checked or not labels:
            return
        for head, mapping in self.maps.items():
            present = np.unique(labels[head]).tolist()
            absent = sorted(set(np.flatnonzero(mapping.table >= 0).tolist()) - set(present))
            if absent:
                raise ConfigError(self.path, f"class id(s) {absent} of head '{head}' have no sample in the training "
                                  f"split of dataset '{self.inner.name}'",
                                  fix=f"choose among the ids that exist there: {_ranges(present)}")
        self._checked = True

    def open(self, split: str) -> Split | DiskSplit:
        opened = self.fmt.open(split)
        if isinstance(opened, Stream):
            raise ConfigError(self.path, f"dataset '{self.inner.name}' streams its {split} batches "
                              f"({type(opened).__name__}): class groups select samples when a split opens, which a "
                              "stream does not allow",
                              fix="convert the data to a map-style format (core-data convert --to hdf5) and select "
                                  "classes there, or remove classes, group and label_map")
        if isinstance(opened, DiskSplit):
            labels = {head: opened.column(head) for head in self.maps}
        else:
            labels = {head: np.asarray(opened.fields[head]) for head in self.maps}
        if split == "train":
            self._check_present(labels)
        keep = self._keep(labels)
        if isinstance(opened, DiskSplit):
            return PickedRows(opened, keep, self.maps)
        return Split({key: self.maps[key].apply(labels[key][keep]) if key in self.maps else _pick(value, keep)
                      for key, value in opened.fields.items()})

    @classmethod
    def write_run_files(cls, run_dir: Path, wrapped: dict[str, FormatWrapper]) -> None:
        """``<run>/label_map.json``: per dataset and head, each new id's original ids and names
        (written atomically); removed when no dataset selects classes (an earlier run's)."""
        maps = {name: {head: m.describe() for head, m in subset_maps(fmt).items()} for name, fmt in wrapped.items()}
        if maps:
            write_atomic(run_dir / LABEL_MAP_FILE, json.dumps(maps, indent=2) + "\n")
        else:
            (run_dir / LABEL_MAP_FILE).unlink(missing_ok=True)


def _ranges(ids: list[int]) -> str:
    """Sorted ids as ``0..4, 7, 9..11``."""
    runs: list[list[int]] = []
    for i in ids:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in runs) or "none"


def _pick(array: Any, index: np.ndarray) -> Any:
    """``array``'s samples at ``index``: copied for an array in RAM, read lazily otherwise."""
    return array[index] if isinstance(array, np.ndarray) else Picked(array, index)


class Picked:
    """Samples ``index`` (ascending) of a sliceable array read lazily, a window at a time (what
    preparation reads in chunks): each window reads the span from its first to its last sample."""

    def __init__(self, array: Any, index: np.ndarray) -> None:
        self.array, self.index = array, index
        self.shape = (len(index), *array.shape[1:])
        self.dtype = array.dtype

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, window: slice) -> np.ndarray:
        wanted = self.index[window]
        if not len(wanted):
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)
        start = int(wanted[0])
        return np.asarray(self.array[start:int(wanted[-1]) + 1])[wanted - start]


class PickedRows(DiskSplit):
    """A :class:`DiskSplit`'s samples at ``index``, labels renumbered."""

    def __init__(self, split: DiskSplit, index: np.ndarray, maps: dict[str, ClassMap]) -> None:
        self.split, self.index, self.maps = split, index, maps

    def __len__(self) -> int:
        return len(self.index)

    def _renumber(self, fields: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: self.maps[k].apply(v) if k in self.maps else v for k, v in fields.items()}

    def read(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return self._renumber(self.split.read(self.index[indices]))

    def column(self, name: str) -> np.ndarray:
        return self._renumber({name: self.split.column(name)[self.index]})[name]


def subset_maps(fmt: DataFormat) -> dict[str, ClassMap]:
    """The class maps of a format a run wrapped (``{}`` for one without class options)."""
    return next((w.class_maps() for w in wrappers(fmt) if isinstance(w, ClassSubset)), {})
