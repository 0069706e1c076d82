"""Turns a checked config into built components, without loading any data.

This is everything ``--dry-run`` does: resolve each name through the registry, validate
its options against the factory, build the cheap objects (format, storage, transforms,
sampler), read the dataset's metadata, plan the transform stages, check ``loss_weights``
and ``trainer`` keys, and build the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.config import RunConfig, component
from core.errors import ConfigError, choices_text, did_you_mean
from core.kinds import DataFormat, DatasetMeta, Sampler, Step, StorageBackend
from core.options import validate_options
from core.registry import Component, Registry

# Trainer arguments the core sets itself; a run cannot override them from YAML.
MANAGED_TRAINER_KEYS = ("logger", "callbacks", "default_root_dir", "enable_checkpointing", "use_distributed_sampler")


@dataclass
class Used:
    """One component a run uses: for the dry-run table and ``plugins.json``."""

    kind: str
    name: str
    path: str
    component: Component

    def row(self) -> dict[str, str]:
        info = self.component.plugin
        return {"kind": self.kind, "name": self.name, "yaml": self.path, "plugin": info.name, "distribution": info.dist, "version": info.version}


@dataclass
class ResolvedRun:
    config: RunConfig
    registry: Registry
    fmt: DataFormat
    meta: DatasetMeta
    storage: StorageBackend
    prepare: list[Step]
    device: list[Step]
    sampler: Sampler
    model: Any
    loss_weights: dict[str, float]
    used: list[Used] = field(default_factory=list)


def build(registry: Registry, kind: str, spec: Any, path: str, used: list[Used], *context: Any) -> Any:
    """Resolve, validate and call one component factory; ``context`` goes first (models: meta)."""
    name, options = component(spec, path)
    found = registry.get(kind, name, path)
    factory = found.resolve()
    skip = ("meta",) if kind == "model" else ()
    options_path = f"{path}.{name}" if isinstance(spec, dict) else path
    checked = validate_options(factory, options, options_path, f"{kind} '{name}'", skip=skip)
    used.append(Used(kind, name, path, found))
    try:
        return factory(*context, **checked)
    except (ConfigError, ValueError) as exc:
        # factories raise ValueError for option combinations their types cannot express
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(options_path, f"{kind} '{name}': {exc}") from None


def resolve(config: RunConfig, registry: Registry) -> ResolvedRun:
    """Build every component of ``config``; load no samples."""
    used: list[Used] = []
    data = config.data
    fmt = build(registry, "format", data.format, "data.format", used)
    meta = fmt.meta()
    storage = build(registry, "storage", data.storage, "data.storage", used)
    steps = [
        Step(f"data.transforms.{i}", component(spec, f"data.transforms.{i}")[0],
             build(registry, "transform", spec, f"data.transforms.{i}", used))
        for i, spec in enumerate(data.transforms)
    ]
    prepare, device = storage.plan(steps, meta.name)
    sampler = build(registry, "sampler", data.sampler, "data.sampler", used)
    shape = meta.stim_shape
    for step in prepare + device:
        shape = step.transform.output_shape(shape)
    model_meta = DatasetMeta(meta.name, tuple(shape), meta.heads, meta.split_sizes, meta.stim_dtype, meta.extra)
    model = build(registry, "model", config.model, "model", used, model_meta)
    loss_weights = _loss_weights(config.loss_weights, meta.heads)
    check_trainer(config.trainer)
    return ResolvedRun(config, registry, fmt, meta, storage, prepare, device, sampler, model, loss_weights, used)


def _loss_weights(given: dict[str, float], heads: dict[str, int]) -> dict[str, float]:
    for head, weight in given.items():
        if head not in heads:
            raise ConfigError(
                f"loss_weights.{head}",
                f"the dataset has no head '{head}'{did_you_mean(head, heads)}",
                fix=f"its heads are: {choices_text(heads)}",
            )
        if weight < 0:
            raise ConfigError(f"loss_weights.{head}", f"weight {weight} is negative", fix="use a weight >= 0")
    return {head: float(given.get(head, 1.0)) for head in heads}


def check_trainer(options: dict[str, Any]) -> dict[str, Any]:
    """Validate ``trainer`` keys against ``lightning.Trainer``'s own signature."""
    import lightning

    for key in options:
        if key in MANAGED_TRAINER_KEYS:
            raise ConfigError(f"trainer.{key}", f"'{key}' is set by core-train itself", fix=f"remove trainer.{key}")
    return validate_options(lightning.Trainer, options, "trainer", "lightning.Trainer")
