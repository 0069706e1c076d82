"""The datasets of a run: ``data`` alone, a ``datasets`` list, or a ``datasets_dir`` of YAML files.

Each dataset is a :class:`DatasetSpec`: its name, the YAML path its errors point at, and its
format, storage, transforms and sampler (those not given inherit ``data``'s).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from core.config import ComponentSpec, DatasetSection, RunConfig, _to_config_error, read_yaml
from core.errors import ConfigError


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    path: str  # YAML path prefix: "data", "datasets.2" or "<file>.yaml:"
    format: ComponentSpec
    storage: ComponentSpec
    transforms: list[ComponentSpec]
    sampler: ComponentSpec

    def at(self, key: str) -> str:
        return f"{self.path}{key}" if self.path.endswith(":") else f"{self.path}.{key}"


def dataset_specs(config: RunConfig) -> list[DatasetSpec]:
    """Every dataset of the run, in order; names unique."""
    data = config.data
    if data.format is not None:
        return [DatasetSpec("", "data", data.format, data.storage, list(data.transforms), data.sampler)]
    sections = [(f"datasets.{i}", s) for i, s in enumerate(config.datasets)] if config.datasets is not None \
        else _read_dir(Path(config.datasets_dir))
    if config.max_datasets is not None:
        if config.max_datasets > len(sections):
            where = f"folder {config.datasets_dir}" if config.datasets_dir else "datasets list"
            raise ConfigError("max_datasets", f"is {config.max_datasets}, but the {where} holds {len(sections)} datasets",
                              fix=f"set max_datasets to at most {len(sections)}, or remove it to use all")
        sections = sections[: config.max_datasets]
    seen: dict[str, str] = {}
    specs = []
    for path, section in sections:
        if section.name in seen:
            raise ConfigError(f"{path}name" if path.endswith(":") else f"{path}.name",
                              f"dataset name '{section.name}' is also used by {seen[section.name]}",
                              fix="give every dataset its own name (metrics and readouts are keyed by it)")
        seen[section.name] = path
        specs.append(DatasetSpec(
            section.name, path, section.format, section.storage if section.storage is not None else data.storage,
            list(section.transforms if section.transforms is not None else data.transforms),
            section.sampler if section.sampler is not None else data.sampler,
        ))
    return specs


def read_from_dir(config: RunConfig) -> list[dict[str, Any]] | None:
    """What ``datasets_dir`` gives (each dataset's name and parts), kept in a run's checkpoints:
    the config holds only the folder's name, whose files may change after training (sessions
    swapped, added or removed). None without ``datasets_dir``."""
    if config.datasets_dir is None:
        return None
    return [{"name": s.name, "format": s.format, "storage": s.storage, "transforms": s.transforms, "sampler": s.sampler}
            for s in dataset_specs(config)]


def dir_changes(trained: Any, config: RunConfig) -> list[tuple[str, Any, Any]]:
    """``(key, then, now)`` for each dataset of ``datasets_dir`` that differs from what it gave
    when the checkpoint was written (``trained``: its :func:`read_from_dir`; None: not known)."""
    now = read_from_dir(config)
    if not isinstance(trained, list) or now is None:
        return []
    from core.resume import changed_keys

    then, here = {d["name"]: d for d in trained}, {d["name"]: d for d in now}
    changes: list[tuple[str, Any, Any]] = []
    for name in sorted(set(then) | set(here)):
        if name in then and name in here:  # the dataset's parts that changed
            changes += changed_keys(then[name], here[name], f"datasets_dir ({name}).")
        else:  # added or removed
            changes.append((f"datasets_dir ({name})", then.get(name), here.get(name)))
    return changes


def _read_dir(folder: Path) -> list[tuple[str, DatasetSection]]:
    if not folder.is_dir():
        raise ConfigError("datasets_dir", f"'{folder}' is not a folder", fix="point it at a folder of per-dataset YAML files")
    files = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml"))
    if not files:
        raise ConfigError("datasets_dir", f"'{folder}' holds no .yaml files", fix="write one YAML file per dataset there")
    sections = []
    for file in files:
        raw: dict[str, Any] = read_yaml(file)
        raw.setdefault("name", file.stem)
        try:
            sections.append((f"{file}:", DatasetSection.model_validate(raw)))
        except pydantic.ValidationError as exc:
            error = _to_config_error(exc)
            raise ConfigError(f"{file}: {error.path}", error.message, fix=error.fix) from None
    return sections
