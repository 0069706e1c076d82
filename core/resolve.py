"""Turns a checked config into built components, without loading any data.

This is everything ``--dry-run`` does: resolve each name through the registry, validate
its options against the factory, build the cheap objects (format, storage, transforms,
sampler), read the dataset's metadata, plan the transform stages, check ``loss_weights``
and ``trainer`` keys, and build the model. Loggers and callbacks are checked (names,
options, optional dependencies) here and built with each trainer (``core.run.build_trainer``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from core.compiling import check_compile
from core.config import STANDARD_CALLBACKS, RunConfig, component, switched_off, unknown_key
from core.datasets import DatasetSpec, dataset_specs
from core.errors import ConfigError, PluginUnavailable, choices_text, did_you_mean, short_repr
from core.fitting import check_learners
from core.kinds import Analysis, DataFormat, DatasetMeta, Sampler, Step, StorageBackend, layouts
from core.memory import MemoryPlan, plan_memory, total_plan
from core.options import option_names, validate_options
from core.placement import Placement, accelerator_free, choose_placement
from core.shared_memory import per_node
from core.registry import Component, Registry

# Trainer arguments the core sets itself; a run cannot override them from YAML.
MANAGED_TRAINER_KEYS = ("logger", "callbacks", "default_root_dir", "enable_checkpointing", "use_distributed_sampler")
# arguments the core passes to a kind's factory itself: not options
CONTEXT_ARGS = {"model": ("meta", "datasets"), "logger": ("run_dir",), "format_wrapper": ("fmt", "path")}
# where a run sets what a refused trainer key would
TRAINER_KEY_FIXES = {
    "logger": "remove trainer.logger and list the loggers under the top-level key logging:, e.g. logging: [csv, tensorboard, wandb]",
    "callbacks": "remove trainer.callbacks and list them under the top-level key callbacks:, e.g. "
                 "callbacks: [lr_monitor, {early_stopping: {patience: 5}}]",
}

log = logging.getLogger("core")


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
class ResolvedDataset:
    """One dataset of a run, built: its parts and memory plan (its name is ``meta.name``)."""

    fmt: DataFormat
    meta: DatasetMeta
    storage: StorageBackend
    steps: list[Step]
    prepare: list[Step]
    device: list[Step]
    sampler: Sampler
    memory: MemoryPlan
    model_meta: DatasetMeta  # the meta as the model sees it: stim layout after every transform


@dataclass
class ResolvedRun:
    config: RunConfig
    registry: Registry
    datasets: list[ResolvedDataset]
    model: Any
    loss_weights: dict[str, float]
    memory: MemoryPlan  # all datasets together
    placement: Placement
    used: list[Used] = field(default_factory=list)
    loggers: list[Checked] = field(default_factory=list)  # built per trainer: factory(run_dir, **options)
    callbacks: list[Checked] = field(default_factory=list)  # built per trainer: factory(**options)
    analyses: list[Analysis] = field(default_factory=list)  # run after the test, in the config's order

    @property
    def heads(self) -> dict[str, int]:
        return all_heads(self.datasets)

    # a run's first (usually only) dataset, for the single-dataset features (the experiment sweep)
    @property
    def first(self) -> ResolvedDataset:
        return self.datasets[0]

    @property
    def meta(self) -> DatasetMeta:
        return self.first.meta

    @property
    def steps(self) -> list[Step]:
        return self.first.steps

    @property
    def prepare(self) -> list[Step]:
        return self.first.prepare

    @property
    def device(self) -> list[Step]:
        return self.first.device

    @property
    def storage(self) -> StorageBackend:
        return self.first.storage


@dataclass
class Checked:
    """A component whose name is resolved and whose options passed validation; not built yet."""

    used: Used
    factory: Any
    options: dict[str, Any]
    options_path: str

    def build(self, *context: Any) -> Any:
        """Call the factory; ``context`` goes first (models: meta)."""
        with self.errors_at():
            return self.factory(*context, **self.options)

    @contextmanager
    def errors_at(self) -> Iterator[None]:
        """A ValueError or TypeError of the component (an option combination its type hints
        cannot express) becomes a config error at its YAML path, and a ConfigError's path
        relative to its options (``urls``, or empty) is put under it."""
        try:
            yield
        except ConfigError as exc:
            if exc.path == self.options_path or exc.path.startswith(f"{self.options_path}."):
                raise
            raise ConfigError(".".join(filter(None, (self.options_path, exc.path))), exc.message, exc.fix) from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(self.options_path, f"{self.used.kind} '{self.used.name}': {exc}") from None


def check(registry: Registry, kind: str, spec: Any, path: str) -> Checked:
    """Resolve a component's name and validate its options against the factory's signature.
    Its options' errors point under its name also when it is written bare (``format: cifar10``
    missing ``root`` is at ``data.format.cifar10.root``: where the option is to be written)."""
    name, options = component(spec, path)
    return check_named(registry, kind, name, options, path, f"{path}.{name}")


def check_named(registry: Registry, kind: str, name: str, options: dict[str, Any], path: str, options_path: str) -> Checked:
    """Component ``name`` of ``kind`` named at ``path``, its ``options`` (at ``options_path``) validated."""
    found = registry.get(kind, name, path)
    try:
        factory = found.resolve()
    except PluginUnavailable as exc:  # the component's module needs an optional package that is missing
        raise ConfigError(path, f"{kind} '{name}' of {found.plugin.origin} is unavailable: {exc}",
                          fix=f"install what it needs (above), or leave '{name}' out of the run") from None
    skip = CONTEXT_ARGS.get(kind, ())
    checked = validate_options(factory, options, options_path, f"{kind} '{name}'", skip=skip)
    return Checked(Used(kind, name, path, found), factory, checked, options_path)


def check_section_names(config: RunConfig, registry: Registry) -> None:
    """The top-level keys beyond the core's must each name a loaded analysis (``experiment:``)."""
    for key in config.model_extra or {}:
        if key not in registry.components["analysis"]:
            known = [*RunConfig.model_fields, *registry.components["analysis"]]
            typo = did_you_mean(key, known)  # else maybe the section of a plugin that did not load
            raise unknown_key(key, key, known, *([] if typo else registry.not_loaded(key)))


def check_sections(config: RunConfig, registry: Registry) -> list[Checked]:
    """The sections of the analyses a run asks for, each a mapping of the analysis' options, checked."""
    check_section_names(config, registry)
    checked = []
    for key, options in (config.model_extra or {}).items():
        if not isinstance(options, dict):
            raise ConfigError(key, f"{short_repr(options)} is not a mapping of the analysis' options",
                              fix=f"write it as {key}: {{option: value, ...}} (core-plugins show {key})")
        checked.append(check_named(registry, "analysis", key, options, key, key))
    return checked


def resolve(config: RunConfig, registry: Registry) -> ResolvedRun:
    """Check every component of ``config``, then build them; load no samples."""
    data = config.data
    analysis_c = check_sections(config, registry)
    check_trainer(config.trainer)
    check_compile(config.compile, config.trainer)
    if data.placement == "device" and data.num_workers:
        raise ConfigError("data.num_workers", "placement 'device' gathers batches on the accelerator in the main process",
                          fix="set data.num_workers: 0 (or data.placement: host)")
    model_c = check(registry, "model", config.model, "model")
    logger_c = check_list(config, registry, "logger", "logging")
    callback_c = check_list(config, registry, "callback", "callbacks")
    for checked in callback_c:  # Lightning refuses a progress bar (or summary) its switch turned off
        if switched_off(checked.used.name, config.trainer):
            raise ConfigError(checked.used.path, f"callback '{checked.used.name}' is listed, but "
                              f"trainer.{STANDARD_CALLBACKS[checked.used.name]} is false", fix="remove one of them")
    used: list[Used] = []
    free = accelerator_free(config.trainer)
    datasets = [_resolve_dataset(spec, config, registry, used) for spec in dataset_specs(config)]
    held = sum(d.memory.row(d.memory.chosen).bytes or 0 for d in datasets)
    placement = choose_placement(data.placement, data.num_workers, held, free)
    if placement.where == "device" and free is not None:  # the held samples are planned against the accelerator
        datasets = [replace(d, memory=replace(d.memory, available=free, where="accelerator memory")) for d in datasets]
    memory = datasets[0].memory if len(datasets) == 1 else total_plan([d.memory for d in datasets])
    memory = per_node(memory, config, placement, [s.path for d in datasets for s in d.device if s.transform.learns])
    targets = all_heads(datasets) | ({"responses": 0} if any("responses" in d.meta.fields for d in datasets) else {})
    loss_weights = _loss_weights(config.loss_weights, targets)
    model = build_model(model_c, [d.model_meta for d in datasets])
    for checked in callback_c:  # built once here so that --dry-run reports an option combination a factory refuses
        checked.build()
    listed = {c.used.name for c in callback_c}
    standard = [Used("callback", name, "(standard)", registry.components["callback"][name])
                for name in standard_names(config, registry) if name not in listed]
    used += [model_c.used, *(c.used for c in logger_c), *(c.used for c in callback_c), *standard,
             *(c.used for c in analysis_c)]
    resolved = ResolvedRun(config, registry, datasets, model, loss_weights, memory, placement, used, logger_c, callback_c)
    for checked in analysis_c:
        analysis = checked.build()
        with checked.errors_at():
            analysis.plan(resolved)
        resolved.analyses.append(analysis)
    return resolved


def standard_names(config: RunConfig, registry: Registry) -> list[str]:
    """The standard callbacks (:data:`core.config.STANDARD_CALLBACKS`) the run gets: those a
    loaded plugin provides whose trainer switch is not off."""
    found = registry.components["callback"]
    return [name for name in STANDARD_CALLBACKS if name in found and not switched_off(name, config.trainer)]


def check_list(config: RunConfig, registry: Registry, kind: str, key: str) -> list[Checked]:
    """Check the components of a list key (``logging``, ``callbacks``); each name at most once.

    The defaults (the key is not in the config, or holds exactly the default list, as a
    saved ``config.yaml`` does) are a best effort: one whose plugin is not loaded or whose
    optional package is missing is skipped with a warning. A component the config chose
    must resolve."""
    explicit = key in config.model_fields_set and getattr(config, key) != RunConfig.model_fields[key].default
    checked: list[Checked] = []
    skipped: list[tuple[str, str]] = []
    for i, spec in enumerate(getattr(config, key)):
        path = f"{key}.{i}"
        try:
            found = check(registry, kind, spec, path)
        except ConfigError as exc:
            if explicit:
                raise
            skipped.append((component(spec, path)[0], " ".join(line.strip() for line in exc.message.splitlines())))
            continue
        twice = next((c.used.path for c in checked if c.used.name == found.used.name), None)
        if twice is not None:
            raise ConfigError(path, f"{kind} '{found.used.name}' is listed twice (also at {twice})",
                              fix=f"list each {kind} once")
        checked.append(found)
    kept = ", ".join(c.used.name for c in checked)
    for name, reason in skipped:
        log.warning("%s: the default %s '%s' is skipped: %s (set %s: [%s] to leave it out)", key, kind, name, reason,
                    key, kept)
    return checked


def format_wrappers(registry: Registry) -> list[tuple[Component, Any]]:
    """Every registered format wrapper and its factory (one whose optional package is missing takes no options)."""
    found = []
    for component in registry.components["format_wrapper"].values():
        try:
            found.append((component, component.resolve()))
        except PluginUnavailable:
            continue
    return found


def take_wrapper_options(registry: Registry, spec: Any, path: str) -> tuple[Any, list[Checked]]:
    """``spec`` (a format's ``{name: {options}}`` at ``path``) without the options of the format
    wrappers, and each wrapper that takes some, checked: its options keep their YAML path
    under the format's (``data.format.hdf5.classes``)."""
    if not isinstance(spec, dict) or len(spec) != 1 or not isinstance(next(iter(spec.values())), dict):
        return spec, []
    ((name, options),) = spec.items()
    options_path, checked = f"{path}.{name}", []
    for component, factory in format_wrappers(registry):
        keys = option_names(factory, CONTEXT_ARGS["format_wrapper"])
        taken = {key: value for key, value in options.items() if key in keys}
        if taken:
            options = {key: value for key, value in options.items() if key not in keys}
            valid = validate_options(factory, taken, options_path, f"format_wrapper '{component.name}'",
                                     skip=CONTEXT_ARGS["format_wrapper"])
            checked.append(Checked(Used("format_wrapper", component.name, path, component), factory, valid, options_path))
    return {name: options}, checked


def all_heads(datasets: list[ResolvedDataset]) -> dict[str, int]:
    """Every label head of the run's datasets, with its number of classes."""
    return {head: n for d in datasets for head, n in d.meta.heads.items()}


def _resolve_dataset(spec: DatasetSpec, config: RunConfig, registry: Registry, used: list[Used]) -> ResolvedDataset:
    format_spec, wrapper_c = take_wrapper_options(registry, spec.format, spec.at("format"))
    fmt_c = check(registry, "format", format_spec, spec.at("format"))
    storage_c = check(registry, "storage", spec.storage, spec.at("storage"))
    sampler_c = check(registry, "sampler", spec.sampler, spec.at("sampler"))
    transform_c = [check(registry, "transform", t, spec.at(f"transforms.{i}")) for i, t in enumerate(spec.transforms)]
    fmt = fmt_c.build()
    for checked in wrapper_c:
        fmt = checked.build(fmt, checked.options_path)
    meta = fmt.meta()
    if spec.name:
        meta = replace(meta, name=spec.name)
    storage = storage_c.build()
    steps = [Step(c.used.path, c.used.name, c.build()) for c in transform_c]
    prepare, device = storage.plan(steps, meta.name)
    check_learners(device, meta.name)
    if fmt.streams and prepare:
        raise ConfigError(prepare[0].path, f"format '{fmt_c.used.name}' streams batches from disk, so transform "
                          f"'{prepare[0].name}' cannot run once at preparation",
                          fix="use transforms that run on the device, or convert the data to a format held in RAM")
    layout = layouts(meta.layout, prepare + device, meta.name)[-1]
    memory = plan_memory(meta, storage_c.used.name, _backends(registry, storage_c.used.name, storage), steps,
                         config.data.memory_budget, streamed=fmt.streams)
    check_stim_dtype(storage, meta, memory, spec.at("storage"))
    sampler = sampler_c.build()
    try:
        sampler.bind_meta(meta)
    except ValueError as exc:
        raise ConfigError(sampler_c.options_path, f"sampler '{sampler_c.used.name}': {exc}") from None
    needed = [name for name in sampler.needs if name not in meta.fields and name not in meta.heads]
    if needed:
        raise ConfigError(spec.at("sampler"), f"sampler '{sampler_c.used.name}' weights samples by "
                          f"{', '.join(needed)}, but dataset '{meta.name}' has no such field or head (it has: "
                          f"fields {', '.join(meta.fields) or '(none)'}; heads {', '.join(meta.heads) or '(none)'})",
                          fix="use data.sampler: random, or data that records it (e.g. a session's contrast)")
    used += [fmt_c.used, *(c.used for c in wrapper_c), storage_c.used, *(c.used for c in transform_c), sampler_c.used]
    model_meta = replace(meta, stim_shape=layout.shape, stim_axes=layout.axes)
    return ResolvedDataset(fmt, meta, storage, steps, prepare, device, sampler, memory, model_meta)


def check_stim_dtype(storage: StorageBackend, meta: DatasetMeta, memory: MemoryPlan, path: str) -> None:
    """A storage backend that cannot hold the dataset's stim dtype (uint8 given float stim) is a
    config error at its YAML path, in the dry run, naming the backends that can."""
    try:
        storage.check_stim(meta.stim_dtype)
    except ValueError as exc:
        takers = [row.dtype for row in memory.rows if row.bytes is not None]
        fix = (f"set {path}: {' or '.join(takers)}" if takers else
               f"use a storage backend that holds {meta.stim_dtype} stim (plugin cast: bfloat16 or float32)")
        raise ConfigError(path, f"dataset '{meta.name}': {exc}", fix=fix) from None


def build_model(model_c: Checked, metas: list[DatasetMeta]) -> Any:
    """``factory(meta, **options)``; a factory taking ``datasets`` also gets every dataset's meta by name."""
    import inspect

    takes_all = "datasets" in inspect.signature(model_c.factory).parameters
    if len(metas) > 1 and not takes_all:
        raise ConfigError("model", f"model '{model_c.used.name}' is built for one dataset, but this run has "
                          f"{len(metas)}", fix="use a model with one readout per dataset (shared_core_readout)")
    if takes_all:
        return model_c.build(metas[0], {meta.name: meta for meta in metas})
    return model_c.build(metas[0])


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


def _loss_weights(given: dict[str, float], heads: dict[str, int]) -> dict[str, float]:
    """A weight per target: each label head, and ``responses`` when the data has them."""
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
    """Validate ``trainer`` keys against ``lightning.Trainer``'s own signature, and the
    ``accelerator`` name and ``devices`` value (what does not depend on the machine; see
    :func:`check_accelerator` for what does)."""
    import lightning

    for key in options:
        if key in MANAGED_TRAINER_KEYS:
            raise ConfigError(f"trainer.{key}", f"'{key}' is set by core-train itself",
                              fix=TRAINER_KEY_FIXES.get(key, f"remove trainer.{key}"))
    checked = validate_options(lightning.Trainer, options, "trainer", "lightning.Trainer", skip=MANAGED_TRAINER_KEYS)
    accelerator = checked.get("accelerator", "auto")
    if isinstance(accelerator, str):
        from lightning.pytorch.accelerators import AcceleratorRegistry

        names = ["auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())]
        if accelerator not in names:
            raise ConfigError("trainer.accelerator", f"{short_repr(accelerator)} is not an accelerator"
                              f"{did_you_mean(accelerator.lower(), names)}", fix=f"use one of: {', '.join(names)}")
    if "devices" in checked:
        _check_devices(options["devices"], accelerator)
    _check_counts(checked)
    return checked


# trainer values the signature's types admit and Lightning refuses (or divides by) only once training runs
LEAST = {"log_every_n_steps": 1, "accumulate_grad_batches": 1, "max_steps": -1, "max_epochs": -1, "min_epochs": 0,
         "min_steps": 0, "check_val_every_n_epoch": 1}


def _check_counts(checked: dict[str, Any]) -> None:
    for key, least in LEAST.items():
        value = checked.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value < least:
            raise ConfigError(f"trainer.{key}", f"{key} must be at least {least}, not {value}",
                              fix=f"set trainer.{key} to {max(least, 1)} or more" + (" (-1: no limit)" if least < 0 else ""))
    if isinstance(checked.get("max_time"), str):
        from lightning.pytorch.callbacks import Timer
        from lightning.fabric.utilities.exceptions import MisconfigurationException

        try:
            Timer(duration=checked["max_time"])
        except MisconfigurationException:
            raise ConfigError("trainer.max_time", f"{short_repr(checked['max_time'])} is not a duration",
                              fix="write it as DD:HH:MM:SS, e.g. max_time: '00:12:00:00' for 12 hours") from None


DEVICES_FIX = "set trainer.devices to a number of devices (1, 2, ...), a list of GPU indices ([0, 1]), -1 for every GPU, or auto"


def _devices(devices: Any) -> int | list[int] | str:
    """Lightning's ``devices`` as a count, a list of indices or ``"auto"``; ``"?"`` if it is neither."""
    if isinstance(devices, bool):
        return int(devices)
    if isinstance(devices, str):
        text = devices.strip()
        if text == "auto":
            return "auto"
        try:
            return [int(part) for part in text.split(",") if part.strip()] if "," in text else int(text)
        except ValueError:
            return "?"
    return devices


def _check_devices(devices: Any, accelerator: Any) -> None:
    """``devices: 0`` (and other values Lightning refuses with a traceback) as a config error."""
    value = _devices(devices)
    if value == "?":
        raise ConfigError("trainer.devices", f"{short_repr(devices)} is not a number of devices", fix=DEVICES_FIX)
    if value == 0 or value == []:
        raise ConfigError("trainer.devices", f"{short_repr(devices)} asks for no device: a run trains on at least one",
                          fix=DEVICES_FIX)
    if isinstance(value, int) and value < -1 or isinstance(value, list) and any(i < 0 for i in value):
        raise ConfigError("trainer.devices", f"{short_repr(devices)} is not a device count or a list of device indices "
                          "(-1 alone means every GPU)", fix=DEVICES_FIX)
    if accelerator == "cpu" and (value == -1 or isinstance(value, list)):
        raise ConfigError("trainer.devices", f"{short_repr(devices)} names GPUs, but trainer.accelerator is cpu: on the "
                          "CPU, devices is a number of processes", fix="set trainer.devices: 1 (or N processes), or auto")


def check_accelerator(options: dict[str, Any]) -> None:
    """Is the accelerator that ``trainer`` asks for on this machine? Checked before a Trainer
    is built (``lightning.Trainer`` raises a ``MisconfigurationException`` traceback);
    ``--dry-run`` only warns, since a config is often checked on a machine without the GPU
    it will train on."""
    import importlib.util

    import torch

    name = options.get("accelerator", "auto")
    if not isinstance(name, str):
        return
    cuda = torch.cuda.is_available()
    mps = torch.backends.mps.is_available()
    fix = ("set trainer.accelerator: cpu, or auto (a GPU when there is one, else the CPU); to train on a GPU, "
           "run on a machine that has one")
    build = f"torch {torch.__version__}" + (", a build without CUDA" if torch.version.cuda is None else "")
    if name in ("gpu", "cuda") and not cuda and not (name == "gpu" and mps):
        raise ConfigError("trainer.accelerator", f"'{name}' asks for a GPU, but there is none here: "
                          f"torch.cuda.is_available() is False ({build})", fix=fix)
    if name == "mps" and not mps:
        raise ConfigError("trainer.accelerator", "'mps' asks for an Apple GPU, but there is none here: "
                          f"torch.backends.mps.is_available() is False ({build})", fix=fix)
    if name == "tpu" and importlib.util.find_spec("torch_xla") is None:
        raise ConfigError("trainer.accelerator", "'tpu' needs torch_xla, which is not installed",
                          fix="pip install torch_xla on a TPU machine, or set trainer.accelerator: cpu or auto")
    devices = _devices(options.get("devices", "auto"))
    if name == "auto" and not (cuda or mps) and (devices == -1 or isinstance(devices, list)):
        raise ConfigError("trainer.devices", f"{short_repr(options['devices'])} names GPUs, but there is none here "
                          "(trainer.accelerator auto trains on the CPU, where devices is a number of processes)",
                          fix="set trainer.devices: 1 (or N processes) or auto; or set trainer.accelerator: gpu "
                              "and run on a machine with a GPU")
