"""Reads a run's YAML, applies ``--set`` overrides and checks the top-level shape.

Components are written as a bare name or a one-key mapping ``{name: {options}}``; their
options are checked later against the factory (see :mod:`core.options`). Every error
names the YAML path.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml

from core.errors import ConfigError, did_you_mean

ComponentSpec = str | dict[str, Any]
DEFAULT_LOGGERS = ("csv", "tensorboard")
DEFAULT_CALLBACKS = ("lr_monitor",)


class _Section(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class PluginsSection(_Section):
    disable: list[str] = []
    only: list[str] | None = None
    require: dict[str, str] = {}


class DataSection(_Section):
    """One dataset's data, or (with ``datasets``/``datasets_dir``) the defaults every dataset shares."""

    format: ComponentSpec | None = None
    storage: ComponentSpec = "uint8"
    transforms: list[ComponentSpec] = []
    sampler: ComponentSpec = "random"
    batch_size: pydantic.PositiveInt = 64
    num_workers: pydantic.NonNegativeInt = 0
    placement: Literal["auto", "host", "device"] = "auto"
    memory_budget: pydantic.ByteSize | None = None
    interleave: Literal["round_robin", "proportional"] = "round_robin"


class DatasetSection(_Section):
    """One of several datasets: its name and format; storage, transforms and sampler default to ``data``'s."""

    name: str = pydantic.Field(min_length=1)
    format: ComponentSpec
    storage: ComponentSpec | None = None
    transforms: list[ComponentSpec] | None = None
    sampler: ComponentSpec | None = None


class OptimSection(_Section):
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: pydantic.PositiveFloat = 1e-3
    weight_decay: pydantic.NonNegativeFloat = 0.0
    momentum: pydantic.NonNegativeFloat = 0.9
    scheduler: Literal["none", "cosine", "step", "linear_warmup_cosine"] = "none"
    step_size: pydantic.PositiveInt = 10
    gamma: pydantic.PositiveFloat = 0.1
    warmup_steps: pydantic.NonNegativeInt = 0  # linear_warmup_cosine: steps from 0 to lr
    min_lr: pydantic.NonNegativeFloat = 0.0  # linear_warmup_cosine: the floor the cosine ends at


class CompileSection(_Section):
    """``torch.compile`` of the model (its ``forward``; weights and checkpoints are unchanged)."""

    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"
    backend: str = "inductor"
    fullgraph: bool = False
    dynamic: bool | None = None


class CheckpointSection(_Section):
    """The best checkpoint: what it is chosen by (default: the module's monitor) and how many are kept."""

    monitor: str | None = None
    mode: Literal["max", "min"] = "max"
    save_top_k: pydantic.PositiveInt = 1


class ExperimentSection(_Section):
    """A sweep evaluated on the test split: ``parameter`` is ``<transform>.<option>``."""

    parameter: str
    values: list[Any] = pydantic.Field(min_length=1)


class RunConfig(_Section):
    """The whole run. ``trainer`` is passed to ``lightning.Trainer`` (checked against it)."""

    name: str
    seed: int = 0
    output_dir: str = "runs"
    plugins: PluginsSection = PluginsSection()
    data: DataSection
    datasets: list[DatasetSection] | None = None
    datasets_dir: str | None = None
    max_datasets: pydantic.PositiveInt | None = None
    model: ComponentSpec
    loss_weights: dict[str, float] = {}
    optim: OptimSection = OptimSection()
    trainer: dict[str, Any] = {}
    logging: list[ComponentSpec] = list(DEFAULT_LOGGERS)  # a default that is not installed is skipped
    callbacks: list[ComponentSpec] = list(DEFAULT_CALLBACKS)  # added to the core's own (checkpoints, ...)
    checkpoint: CheckpointSection = CheckpointSection()
    compile: CompileSection | None = None
    experiment: ExperimentSection | None = None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a YAML file with ``yaml.safe_load``; a mapping or a clear error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("", f"config file '{path}' does not exist", fix="pass the path of a run YAML, e.g. configs/quickstart.yaml")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError("", f"{path}{where}: YAML syntax error: {problem}", fix="correct the YAML at that line") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("", f"{path} must hold a mapping of keys (name, data, model, ...), not {type(data).__name__}")
    return data


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one ``--set a.b=c``; the value is parsed as YAML (``8`` is an int, ``[a]`` a list).

    Descending into a component written as a bare name turns it into ``{name: {}}``, so
    ``--set model.simple_cnn.conv1=8`` works whichever form the file used.
    """
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise ConfigError("", f"--set '{assignment}' is not of the form key.path=value", fix="e.g. --set data.batch_size=32")
    parts = key.split(".")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part) if isinstance(node, dict) else None
        if isinstance(child, str) and depth + 1 < len(parts) - 1 and parts[depth + 1] == child:
            child = node[part] = {child: {}}
        elif child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(".".join(parts[: depth + 1]), f"is {child!r}, not a mapping; cannot set '{key}'")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(value)
    except yaml.YAMLError:
        node[parts[-1]] = value


def load_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """Read, override and check a run config. ``name`` defaults to the file's stem."""
    raw = read_yaml(path)
    for assignment in overrides:
        apply_override(raw, assignment)
    raw.setdefault("name", Path(path).stem)
    return parse_config(raw)


def parse_config(raw: dict[str, Any]) -> RunConfig:
    try:
        config = RunConfig.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise _to_config_error(exc) from None
    given = [key for key, value in (("data.format", config.data.format), ("datasets", config.datasets),
                                    ("datasets_dir", config.datasets_dir)) if value is not None]
    if len(given) != 1:
        raise ConfigError(given[1] if given else "data.format",
                          f"a run names its data once: {'both ' + ' and '.join(given) if given else 'none'} given",
                          fix="give data.format (one dataset), datasets (a list) or datasets_dir (a folder of YAML files)")
    if config.max_datasets is not None and config.data.format is not None:
        raise ConfigError("max_datasets", "applies to datasets or datasets_dir, not to one data.format",
                          fix="remove max_datasets")
    return config


def _to_config_error(exc: pydantic.ValidationError) -> ConfigError:
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err["loc"] if not str(p).startswith(("str", "dict[", "list["))]
    path = ".".join(loc)
    if err["type"] == "extra_forbidden":
        section = _section_at(loc[:-1])
        known = list(section.model_fields) if section else []
        return ConfigError(path, f"unknown key '{loc[-1]}'{did_you_mean(loc[-1], known)}", fix=f"valid keys here: {', '.join(known)}")
    if err["type"] == "missing":
        return ConfigError(path, "is required but missing", fix="add it (see docs/config.md)")
    return ConfigError(path, f"{err.get('input')!r} is not valid: {err['msg']}")


def _section_at(loc: list[str]) -> type[pydantic.BaseModel] | None:
    model: Any = RunConfig
    for part in loc:
        field = model.model_fields.get(part)
        options = [field.annotation, *typing.get_args(field.annotation)] if field else []
        model = next((t for t in options if isinstance(t, type) and issubclass(t, pydantic.BaseModel)), None)
        if model is None:
            return None
    return model


def component(spec: Any, path: str) -> tuple[str, dict[str, Any]]:
    """Split a component spec (``name`` or ``{name: {options}}``) into name and options."""
    if isinstance(spec, str) and spec:
        return spec, {}
    if isinstance(spec, dict) and len(spec) == 1:
        ((name, options),) = spec.items()
        if options is None:
            options = {}
        if isinstance(name, str) and isinstance(options, dict):
            return name, options
    raise ConfigError(
        path,
        f"{spec!r} is not a component",
        fix="write a component as a name ('pixelnorm') or a one-key mapping ({pixelnorm: {mean: 127}})",
    )


def to_yaml(config: RunConfig) -> str:
    """The resolved config as YAML (what ``--print-config`` shows and runs save)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
