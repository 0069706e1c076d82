"""Class groups: keep some classes of a format's label head and number them 0..k-1.

Every format with label heads takes, beside its own options, ``classes: [3, 5, 7]`` (ids,
or names when its metadata gives ``extra["class_names"]``), ``group: NAME`` (a group of
the YAML file ``groups: PATH``, or of the metadata's ``extra["groups"]``) or ``label_map:
{3: 0, 5: 0, 7: 1}`` (several ids may share a new one). A list (a name, a mapping of ids)
applies to the first head; ``{head: ...}`` names the head. The core takes these options
off before the format is built (:func:`class_options`) and wraps it (:class:`ClassSubset`):
``meta()`` reports the reduced heads, ``open()`` drops the other samples and renumbers the
labels on the host, once per split (no per-batch work). New ids follow the order listed.

Split sizes: ``meta()`` counts them from the format's ``labels(split)`` when it has one
(labels only: cheap enough for ``--dry-run``); otherwise it reports the whole splits, an
upper bound (the memory plan then over-counts), and a split's size is exact once it opens.
A streamed split (webdataset, ffcv) is refused when it opens.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError, did_you_mean
from core.kinds import DataFormat, DatasetMeta, DiskSplit, Split, Stream

OPTIONS = ("classes", "group", "groups", "label_map")
LABEL_MAP_FILE = "label_map.json"


def class_options(spec: Any, path: str) -> tuple[Any, dict[str, Any]]:
    """``spec`` (``{format: {options}}``) without the class options, and those options
    (with ``path``: the YAML path of the format's options); ``{}`` when none is given."""
    if not isinstance(spec, dict) or len(spec) != 1:
        return spec, {}
    ((name, options),) = spec.items()
    if not isinstance(options, dict) or not any(key in options for key in OPTIONS):
        return spec, {}
    found = {key: options[key] for key in OPTIONS if key in options}
    return {name: {k: v for k, v in options.items() if k not in OPTIONS}}, {**found, "path": f"{path}.{name}"}


@dataclass(frozen=True)
class ClassMap:
    """One head's renumbering: ``table[old id]`` is the new id, -1 for a dropped class."""

    head: str
    table: np.ndarray
    names: list[str] | None  # the original classes' names

    @property
    def size(self) -> int:
        return int(self.table.max()) + 1

    def originals(self) -> list[list[int]]:
        """The original ids of each new id."""
        return [np.flatnonzero(self.table == new).tolist() for new in range(self.size)]

    def new_names(self) -> list[str] | None:
        return None if self.names is None else ["+".join(self.names[i] for i in ids) for ids in self.originals()]

    def inverse(self) -> np.ndarray | None:
        """new id -> original id, when each new id stands for one original class."""
        ids = self.originals()
        return np.array([group[0] for group in ids]) if all(len(group) == 1 for group in ids) else None

    def describe(self) -> list[dict[str, Any]]:
        return [{"id": new, "original_ids": ids, **({"original_names": [self.names[i] for i in ids]} if self.names else {})}
                for new, ids in enumerate(self.originals())]

    def apply(self, labels: np.ndarray) -> np.ndarray:
        """New ids of ``labels`` (-1 for a dropped class or a label outside the head)."""
        labels = np.asarray(labels).astype(np.int64, copy=False)
        inside = (labels >= 0) & (labels < len(self.table))
        return np.where(inside, self.table[np.clip(labels, 0, len(self.table) - 1)], -1)


def _per_head(value: Any, meta: DatasetMeta, path: str, each: tuple[type, ...]) -> dict[str, Any]:
    """``value`` for the first head, or ``{head: value}`` (recognised by values of type ``each``)."""
    if isinstance(value, dict) and value and all(isinstance(v, each) for v in value.values()):
        for head in value:
            if head not in meta.heads:
                raise ConfigError(f"{path}.{head}", f"dataset '{meta.name}' has no head '{head}'"
                                  f"{did_you_mean(str(head), meta.heads)}", fix=f"its heads are: {', '.join(meta.heads)}")
        return dict(value)
    return {next(iter(meta.heads)): value}


def _class_id(entry: Any, head: str, meta: DatasetMeta, path: str) -> int:
    """The id of a class named by its id or its name."""
    n = meta.heads[head]
    names = meta.extra.get("class_names", {}).get(head)
    listing = (f"ids 0..{n - 1}" + (f", names {', '.join(names[:20])}{' ...' if n > 20 else ''}" if names else ""))
    if isinstance(entry, str) and not entry.lstrip("-").isdigit():
        if not names:
            raise ConfigError(path, f"'{entry}' is a class name, but dataset '{meta.name}' gives no names for head "
                              f"'{head}'", fix=f"name its classes by id ({listing})")
        if entry not in names:
            raise ConfigError(path, f"head '{head}' of dataset '{meta.name}' has no class '{entry}'"
                              f"{did_you_mean(entry, names)}", fix=f"its classes are: {listing}")
        return names.index(entry)
    if isinstance(entry, bool) or not isinstance(entry, (int, str)):
        raise ConfigError(path, f"{entry!r} is not a class id or name", fix=f"head '{head}' has {listing}")
    if not 0 <= int(entry) < n:
        raise ConfigError(path, f"class id {entry} is not in head '{head}' of dataset '{meta.name}'",
                          fix=f"the ids that exist are 0..{n - 1}" + (f" ({listing})" if names else ""))
    return int(entry)


def _group(name: Any, options: dict[str, Any], meta: DatasetMeta, path: str) -> Any:
    """The classes of group ``name``, from the ``groups`` file or the metadata's groups."""
    from core.config import read_yaml

    source = options.get("groups")
    if source is not None:
        try:
            groups, where = read_yaml(Path(source).expanduser()), f"file {source}"
        except ConfigError as exc:
            raise ConfigError(f"{options['path']}.groups", exc.message, fix=exc.fix) from None
    else:
        groups, where = meta.extra.get("groups") or {}, f"the metadata of dataset '{meta.name}'"
    if not groups:
        raise ConfigError(path, f"dataset '{meta.name}' names no class groups",
                          fix="give groups: PATH, a YAML file of groups (name: [classes])")
    if name not in groups:
        raise ConfigError(path, f"{where} has no group '{name}'{did_you_mean(str(name), groups)}",
                          fix=f"its groups are: {', '.join(map(str, groups))}")
    return groups[name]


def class_maps(options: dict[str, Any], meta: DatasetMeta) -> dict[str, ClassMap]:
    """Each selected head's :class:`ClassMap`; every error names the option's YAML path."""
    path = options["path"]
    if not meta.heads:
        raise ConfigError(path, f"dataset '{meta.name}' has no label head to select classes of",
                          fix="remove classes, group and label_map")
    if "groups" in options and "group" not in options:
        raise ConfigError(f"{path}.groups", "names a file of class groups, but no group is chosen",
                          fix="add group: NAME (one of the file's groups)")
    chosen: dict[str, tuple[str, dict[Any, int]]] = {}  # head -> (option path, {entry: new id})
    for key, each in (("classes", (list,)), ("group", (str,)), ("label_map", (dict,))):
        if key not in options:
            continue
        for head, value in _per_head(options[key], meta, f"{path}.{key}", each).items():
            at = f"{path}.{key}" + (f".{head}" if isinstance(options[key], dict) and head in options[key] else "")
            if head in chosen:
                raise ConfigError(at, f"head '{head}' is selected twice (also at {chosen[head][0]})",
                                  fix="give one of classes, group or label_map per head")
            if key == "group":
                value = _group(value, options, meta, at)
            if key == "label_map":
                if not isinstance(value, dict) or not value:
                    raise ConfigError(at, f"{value!r} is not a mapping of class ids", fix="e.g. label_map: {3: 0, 5: 0, 7: 1}")
                chosen[head] = (at, dict(value))
            else:
                if not isinstance(value, list) or not value:
                    raise ConfigError(at, f"{value!r} is not a list of classes", fix="e.g. classes: [0, 1, 7]")
                twice = next((entry for i, entry in enumerate(value) if entry in value[:i]), None)
                if twice is not None:
                    raise ConfigError(at, f"class {twice} of head '{head}' is listed twice", fix="list each class once")
                chosen[head] = (at, {entry: new for new, entry in enumerate(value)})
    return {head: _class_map(head, at, entries, meta) for head, (at, entries) in chosen.items()}


def _class_map(head: str, at: str, entries: dict[Any, Any], meta: DatasetMeta) -> ClassMap:
    table = np.full(meta.heads[head], -1, dtype=np.int64)
    for entry, new in entries.items():
        old = _class_id(entry, head, meta, at)
        if table[old] >= 0:
            raise ConfigError(at, f"class {entry} of head '{head}' is listed twice", fix="list each class once")
        if isinstance(new, bool) or not isinstance(new, int) or new < 0:
            raise ConfigError(f"{at}.{entry}", f"{new!r} is not a new class id", fix="new ids are whole numbers from 0")
        table[old] = new
    missing = sorted(set(range(int(table.max()) + 1)) - set(table.tolist()))
    if missing:
        raise ConfigError(at, f"the new ids skip {missing}: head '{head}' would have classes no sample has",
                          fix=f"number the new classes 0..{len(set(table.tolist()) - {-1}) - 1}")
    return ClassMap(head, table, meta.extra.get("class_names", {}).get(head))


class ClassSubset(DataFormat):
    """A format whose samples are those of the chosen classes, labels renumbered by ``maps``."""

    def __init__(self, fmt: DataFormat, options: dict[str, Any]) -> None:
        self.fmt, self.options, self.path = fmt, options, options["path"]
        self.streams = fmt.streams
        self._checked = False

    @cached_property
    def inner(self) -> DatasetMeta:
        return self.fmt.meta()

    @cached_property
    def maps(self) -> dict[str, ClassMap]:
        return class_maps(self.options, self.inner)

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
    return fmt.maps if isinstance(fmt, ClassSubset) else {}


def write_label_maps(run_dir: Path, formats: Iterable[tuple[str, DataFormat]]) -> None:
    """``<run>/label_map.json``: per dataset and head, each new id's original ids and names
    (written atomically; nothing when no dataset selects classes)."""
    from core.files import write_atomic

    maps = {name: {head: m.describe() for head, m in subset_maps(fmt).items()} for name, fmt in formats}
    maps = {name: heads for name, heads in maps.items() if heads}
    if maps:
        write_atomic(run_dir / LABEL_MAP_FILE, json.dumps(maps, indent=2) + "\n")
