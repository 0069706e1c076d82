"""Turns a checked config into built components, without loading any data.

This is everything ``--dry-run`` does: resolve each name through the registry, validate
its options against the factory, build the cheap objects (format, storage, transforms,
sampler), read the dataset's metadata, plan the transform stages, check ``loss_weights``
and ``trainer`` keys, and build the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from core.config import RunConfig, component
from core.errors import ConfigError, choices_text, did_you_mean
from core.kinds import DataFormat, DatasetMeta, Sampler, Step, StorageBackend, layouts
from core.memory import MemoryPlan, plan_memory
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
    steps: list[Step]
    prepare: list[Step]
    device: list[Step]
    sampler: Sampler
    model: Any
    loss_weights: dict[str, float]
    memory: MemoryPlan
    used: list[Used] = field(default_factory=list)


@dataclass
class Checked:
    """A component whose name is resolved and whose options passed validation; not built yet."""

    used: Used
    factory: Any
    options: dict[str, Any]
    options_path: str

    def build(self, *context: Any) -> Any:
        """Call the factory; ``context`` goes first (models: meta). A factory's ValueError
        (an option combination its type hints cannot express) becomes a config error."""
        try:
            return self.factory(*context, **self.options)
        except ValueError as exc:
            raise ConfigError(self.options_path, f"{self.used.kind} '{self.used.name}': {exc}") from None


def check(registry: Registry, kind: str, spec: Any, path: str) -> Checked:
    """Resolve a component's name and validate its options against the factory's signature."""
    name, options = component(spec, path)
    found = registry.get(kind, name, path)
    factory = found.resolve()
    options_path = f"{path}.{name}" if isinstance(spec, dict) else path
    skip = ("meta",) if kind == "model" else ()
    checked = validate_options(factory, options, options_path, f"{kind} '{name}'", skip=skip)
    return Checked(Used(kind, name, path, found), factory, checked, options_path)


def resolve(config: RunConfig, registry: Registry) -> ResolvedRun:
    """Check every component of ``config``, then build them; load no samples."""
    data = config.data
    checked = [
        check(registry, "format", data.format, "data.format"),
        check(registry, "storage", data.storage, "data.storage"),
        check(registry, "sampler", data.sampler, "data.sampler"),
        check(registry, "model", config.model, "model"),
        *(check(registry, "transform", spec, f"data.transforms.{i}") for i, spec in enumerate(data.transforms)),
    ]
    check_trainer(config.trainer)
    if data.placement == "device" and data.num_workers:
        raise ConfigError("data.num_workers", "placement 'device' gathers batches on the accelerator in the main process",
                          fix="set data.num_workers: 0 (or data.placement: host)")
    fmt_c, storage_c, sampler_c, model_c, *transform_c = checked
    fmt = fmt_c.build()
    meta = fmt.meta()
    loss_weights = _loss_weights(config.loss_weights, meta.heads)
    storage = storage_c.build()
    steps = [Step(c.used.path, c.used.name, c.build()) for c in transform_c]
    prepare, device = storage.plan(steps, meta.name)
    if fmt.streams and prepare:
        raise ConfigError(prepare[0].path, f"format '{fmt_c.used.name}' streams batches from disk, so transform "
                          f"'{prepare[0].name}' cannot run once at preparation",
                          fix="use transforms that run on the device, or convert the data to a format held in RAM")
    layout = layouts(meta.layout, prepare + device, meta.name)[-1]
    memory = plan_memory(meta, storage_c.used.name, _backends(registry, storage_c.used.name, storage), steps,
                         data.memory_budget, _accelerator_free(config), streamed=fmt.streams)
    sampler = sampler_c.build()
    model = model_c.build(replace(meta, stim_shape=layout.shape, stim_axes=layout.axes))
    used = [fmt_c.used, storage_c.used, *(c.used for c in transform_c), sampler_c.used, model_c.used]
    return ResolvedRun(config, registry, fmt, meta, storage, steps, prepare, device, sampler, model, loss_weights,
                       memory, used)


def _backends(registry: Registry, chosen: str, built: StorageBackend) -> dict[str, StorageBackend]:
    """Every storage backend that builds with its defaults (for the planner's comparison), and the chosen one."""
    backends: dict[str, StorageBackend] = {}
    for name, found in registry.components["storage"].items():
        if name == chosen:
            backends[name] = built
            continue
        try:
            backends[name] = found.resolve()()
        except Exception:  # a backend that needs options, or fails to load, is left out of the comparison
            continue
    return dict(sorted(backends.items(), key=lambda item: item[1].bytes_per_value))


def _accelerator_free(config: RunConfig) -> int | None:
    """Free accelerator memory when the dataset is to live there, else None (plan against RAM)."""
    if config.data.placement != "device" or str(config.trainer.get("accelerator", "auto")) == "cpu":
        return None
    import torch

    return torch.cuda.mem_get_info()[0] if torch.cuda.is_available() else None


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
    return validate_options(lightning.Trainer, options, "trainer", "lightning.Trainer", skip=MANAGED_TRAINER_KEYS)
