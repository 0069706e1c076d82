"""Class groups' options read against a dataset's metadata: one :class:`ClassMap` per selected head.

``classes: [3, 5, 7]`` (ids, or names when the metadata gives ``extra["class_names"]``),
``group: NAME`` (a group of the YAML file ``groups: PATH``, or of the metadata's
``extra["groups"]``) or ``label_map: {3: 0, 5: 0, 7: 1}`` (several ids may share a new one).
A list (a name, a mapping of ids) applies to the first head; ``{head: ...}`` names the head.
New ids follow the order listed. Every error names the option's YAML path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError, did_you_mean
from core.kinds import DatasetMeta


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
    if not chosen:  # classes, group and label_map: null
        raise ConfigError(path, "selects no classes: classes, group and label_map are null",
                          fix="give the classes to keep, or remove classes, group and label_map")
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
