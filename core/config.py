"""Reads a run's YAML, applies ``--set`` overrides and checks the top-level shape.

Components are written as a bare name or a one-key mapping ``{name: {options}}``; their
options are checked later against the factory (see :mod:`core.options`). Every error
names the YAML path.

The YAML is read with PyYAML's safe loader, bounded (:func:`load_yaml`): nesting deeper
than ``MAX_YAML_DEPTH``, more than ``MAX_YAML_VALUES`` values once aliases are expanded (an
alias bomb), a recursive alias and a key given twice in one mapping are errors.
"""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml

from core.errors import ConfigError, clip, did_you_mean, short_repr

ComponentSpec = str | dict[str, Any]
DEFAULT_LOGGERS = ("csv", "tensorboard")
DEFAULT_CALLBACKS = ("lr_monitor",)
# What every run shows and writes beside its checkpoints, from the built-in callbacks plugin,
# each with the trainer switch that turns it off (None: always on); components like any other
STANDARD_CALLBACKS = {"epoch_summary": None, "curves": None, "progress_bar": "enable_progress_bar",
                      "model_summary": "enable_model_summary"}


def switched_off(callback: str, trainer: dict[str, Any]) -> bool:
    """Whether the trainer options turn the standard callback ``callback`` off (Lightning's
    ``None`` for a switch means on)."""
    switch = STANDARD_CALLBACKS.get(callback)
    return switch is not None and trainer.get(switch) is False
MAX_YAML_DEPTH = 100  # levels of nesting (a run config has about 5)
MAX_YAML_VALUES = 100_000  # values (scalars, lists, mappings) once aliases are expanded
SEED_MAX = 2**32 - 1  # numpy's and lightning.seed_everything's range
# the fix shown with a value pydantic refused, by YAML path
FIXES = {"seed": f"use a seed from 0 to {SEED_MAX} (the range lightning.seed_everything and numpy accept)"}


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
    shared_memory: Literal["auto"] | bool = "auto"  # one copy per node under DDP (core.shared_memory)
    shm_dir: str | None = None  # where that copy lives: /dev/shm (else the temporary folder)
    shard: bool = False  # placement device: each rank keeps only its share of the training split


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
    every_n_train_steps: pydantic.PositiveInt | None = None  # last.ckpt also every N steps (mid-epoch)
    every_n_minutes: pydantic.PositiveFloat | None = None  # last.ckpt also every N minutes of training


class RunConfig(_Section):
    """The whole run. ``trainer`` is passed to ``lightning.Trainer`` (checked against it).
    Any other top-level key is the section of an analysis a plugin provides (``experiment``),
    checked once the plugins are loaded (:func:`core.resolve.check_sections`)."""

    model_config = pydantic.ConfigDict(extra="allow")

    name: str
    seed: int = pydantic.Field(0, ge=0, le=SEED_MAX)
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

    @pydantic.field_validator("output_dir", "datasets_dir")
    @classmethod
    def _home(cls, folder: str | None) -> str | None:
        """``~/runs`` is the home folder's (as for data paths), here and in what Lightning writes."""
        return None if folder is None else os.path.expanduser(folder)


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses nesting deeper than ``MAX_YAML_DEPTH`` while composing
    (PyYAML's composer recurses once per level: thousands of levels are a RecursionError)."""

    def __init__(self, stream: str, source: str) -> None:
        super().__init__(stream)
        self.source = source
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark
                raise ConfigError("", f"{self.source} line {mark.line + 1}, column {mark.column + 1}: the YAML nests "
                                  f"deeper than {MAX_YAML_DEPTH} levels", fix=_DEPTH_FIX)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # Python reads at most 4,300 decimal digits (sys.get_int_max_str_digits)
            raise ConfigError("", f"{self.source} line {node.start_mark.line + 1}, column {node.start_mark.column + 1}: "
                              f"an integer of {len(node.value):,} digits, more than Python reads",
                              fix="write a smaller number") from None


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)

_DEPTH_FIX = "a run config nests a few levels (data.format.digits.image_size); check the brackets and indentation"


def load_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load(text)``, bounded: see the module's doc. ``source`` names the text in
    messages (a file, ``--set key``). A YAML syntax error is raised as ``yaml.YAMLError``."""
    loader = _BoundedLoader(text, source)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, source)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_nodes(root: yaml.Node, source: str) -> None:
    """Walk the composed YAML (each node once, however many aliases point to it): refuse a
    key given twice in one mapping, a recursive alias, and more values or levels than the
    bounds once aliases are expanded. Iterative: the expanded depth can exceed Python's stack."""
    done: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth) once expanded
    active: set[int] = set()
    stack: list[tuple[yaml.Node, str, bool]] = [(root, "", False)]
    while stack:
        node, path, finished = stack.pop()
        key = id(node)
        children = _children(node, path)
        if finished:
            values = 1 + sum(done[id(child)][0] for child, _ in children)
            depth = 1 + max((done[id(child)][1] for child, _ in children), default=0)
            done[key] = values, depth
            active.discard(key)
            line = f"{source} line {node.start_mark.line + 1}"
            if values > MAX_YAML_VALUES:
                raise ConfigError(path, f"{line}: this value stands for more than {MAX_YAML_VALUES:,} values once its "
                                  "aliases (*name) are expanded (an alias bomb?); a run config holds a few hundred",
                                  fix="write the values out, without aliases of aliases")
            if depth > MAX_YAML_DEPTH:
                raise ConfigError(path, f"{line}: this value nests deeper than {MAX_YAML_DEPTH} levels once its "
                                  "aliases (*name) are expanded", fix=_DEPTH_FIX)
            continue
        if key in done:
            continue
        if key in active:
            raise ConfigError(path, f"{source} line {node.start_mark.line + 1}: an alias (*name) refers to a value "
                              "that contains it: the value would be infinite", fix="write the value out, without the alias")
        active.add(key)
        if isinstance(node, yaml.MappingNode):
            _check_duplicate_keys(node, path, source)
        stack.append((node, path, True))
        stack.extend((child, child_path, False) for child, child_path in reversed(children) if id(child) not in done)


def _children(node: yaml.Node, path: str) -> list[tuple[yaml.Node, str]]:
    """A node's children (a mapping's keys and values) with their YAML paths."""
    def at(part: object) -> str:
        return f"{path}.{part}" if path else str(part)

    if isinstance(node, yaml.SequenceNode):
        return [(child, at(i)) for i, child in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        pairs: list[tuple[yaml.Node, str]] = []
        for key, value in node.value:
            where = at(key.value) if isinstance(key, yaml.ScalarNode) else path
            pairs += [(key, where), (value, where)]
        return pairs
    return []


def _check_duplicate_keys(node: yaml.MappingNode, path: str, source: str) -> None:
    """A key twice in one mapping: YAML readers silently keep the last; we say so."""
    seen: dict[tuple[str, str], yaml.Node] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        first = seen.setdefault((key.tag, key.value), key)
        if first is not key:
            a, b = first.start_mark, key.start_mark
            lines = (f"lines {a.line + 1} and {b.line + 1}" if a.line != b.line
                     else f"line {a.line + 1}, columns {a.column + 1} and {b.column + 1}")
            shown = key.value if len(key.value) <= 100 else key.value[:100] + "..."
            raise ConfigError(f"{path}.{key.value}" if path else key.value, f"key '{shown}' appears twice ({lines})",
                              fix=f"keep one of the two in {source} (a YAML reader would silently use the last)")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a YAML file with :func:`load_yaml` (``yaml.safe_load``, bounded); a mapping or a clear error."""
    path = Path(path)
    if not path.is_file():
        if path.is_dir():
            raise ConfigError("", f"config file '{path}' is a folder", fix="pass the path of a run YAML, e.g. configs/quickstart.yaml")
        raise ConfigError("", f"config file '{path}' does not exist", fix="pass the path of a run YAML, e.g. configs/quickstart.yaml")
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ConfigError("", f"cannot read config file '{path}': {exc.strerror or exc}",
                          fix="check the file's permissions (e.g. chmod u+r) and owner") from None
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = content.count(b"\n", 0, exc.start) + 1
        raise ConfigError("", f"{path} line {line}: the file is not UTF-8 text (byte 0x{content[exc.start]:02x} at "
                          f"offset {exc.start})", fix=f"save it as UTF-8, e.g. iconv -f latin1 -t utf-8 {path}") from None
    try:
        data = load_yaml(text, str(path))
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
        raise ConfigError("", f"--set '{short_repr(assignment)[1:-1]}' is not of the form key.path=value", fix="e.g. --set data.batch_size=32")
    parts = key.split(".")
    if len(parts) > MAX_YAML_DEPTH:
        raise ConfigError("", f"--set: the key has {len(parts)} levels, more than {MAX_YAML_DEPTH}", fix=_DEPTH_FIX)
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part) if isinstance(node, dict) else None
        if isinstance(child, str) and depth + 1 < len(parts) - 1 and parts[depth + 1] == child:
            child = node[part] = {child: {}}
        elif child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(".".join(parts[: depth + 1]), f"is {short_repr(child)}, not a mapping; cannot set '{key}'")
        node = child
    try:
        node[parts[-1]] = load_yaml(value, f"--set {key}")
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
        first = exc.errors(include_url=False)[0]
        if first["type"] == "missing" and len(first["loc"]) == 1:
            # a required top-level key given under a misspelt name is that name's error (the
            # other unknown top-level keys are plugins' sections, checked once they are loaded)
            known = list(RunConfig.model_fields)
            typo = next((key for key in raw if key not in known and did_you_mean(key, [str(first["loc"][0])])), None)
            if typo is not None:
                raise unknown_key(typo, typo, known) from None
        raise _to_config_error(exc) from None
    check_name(config.name)
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


def check_name(name: str) -> None:
    """``name`` is one folder name: the run directory ``output_dir/name`` stays inside ``output_dir``."""
    fix = ("use a plain name such as 'quickstart' (letters, digits, '-', '_', '.'); "
           "to put runs in another folder, set output_dir")
    separator = next((c for c in ("/", "\\") if c in name), None)
    if separator:
        raise ConfigError("name", f"'{clip(name, 200)}' holds a path separator ('{separator}'): the run directory "
                          "is output_dir/name and must stay inside output_dir", fix=fix)
    if name in ("", ".", ".."):
        what = {"": "is empty: output_dir itself would be the run directory",
                ".": "'.' would make output_dir itself the run directory",
                "..": "'..' would put the run directory (output_dir/name) outside output_dir"}[name]
        raise ConfigError("name", what, fix=fix)
    if "\0" in name:
        raise ConfigError("name", f"{short_repr(name)} holds a NUL character, which no file name can", fix=fix)


def _to_config_error(exc: pydantic.ValidationError) -> ConfigError:
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err["loc"] if not str(p).startswith(("str", "dict[", "list["))]
    path = ".".join(loc)
    if err["type"] == "extra_forbidden":
        section = _section_at(loc[:-1])
        return unknown_key(path, loc[-1], list(section.model_fields) if section else [])
    if err["type"] == "missing":
        return ConfigError(path, "is required but missing", fix="add it (see docs/config.md)")
    value = err.get("input")
    fix = FIXES.get(path)
    if err["type"] == "string_type" and isinstance(value, (int, float, bool)):  # YAML read 123, 1e3 or yes as such
        fix = fix or f"write it in quotes to keep it as text: {loc[-1]}: '{value}'"
    return ConfigError(path, f"{short_repr(value)} is not valid: {err['msg']}", fix=fix)


def unknown_key(path: str, key: str, known: list[str], *notes: str) -> ConfigError:
    """The error for ``key`` (at ``path``) that its section does not take: the closest of
    ``known``, then ``notes`` (which plugins that did not load may take it)."""
    return ConfigError(path, "\n  ".join([f"unknown key '{key}'{did_you_mean(key, known)}", *notes]),
                       fix=f"valid keys here: {', '.join(known)}")


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
        f"{short_repr(spec)} is not a component",
        fix="write a component as a name ('pixelnorm') or a one-key mapping ({pixelnorm: {mean: 127}})",
    )


def to_yaml(config: RunConfig) -> str:
    """The resolved config as YAML (what ``--print-config`` shows and runs save)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
