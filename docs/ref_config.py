"""Renders the config-keys tables of docs/config.md from the pydantic models in core/config.py.

Each table sits between ``<!-- generated: config keys of MODEL ... -->`` and
``<!-- end generated -->``. The rows, their order, types and defaults come from the model;
the ``meaning`` column is prose kept from the page (matched by key), so a new key gets an
empty meaning that :func:`undocumented` reports.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any

import annotated_types
import pydantic
from pydantic.fields import FieldInfo

from core import config

MARKER = re.compile(r"(<!-- generated: config keys of (\w+)[^>]*-->\n)(.*?)(<!-- end generated -->)", re.S)
HEAD = "| key | type | default | meaning |\n|---|---|---|---|\n"
# defaults the loader or the resolver supplies, not the model
DEFAULTS = {
    "RunConfig.name": "the config file's name without `.yaml`",
    "DataSection.format": "required, unless `datasets` or `datasets_dir` is given (then it must be absent)",
    "DatasetSection.name": "required in a list; the file's stem in a folder",
    "DatasetSection.storage": "`data.storage`",
    "DatasetSection.transforms": "`data.transforms`",
    "DatasetSection.sampler": "`data.sampler`",
}
BOUNDS = {annotated_types.Gt: ("gt", ">"), annotated_types.Ge: ("ge", ">="), annotated_types.Lt: ("lt", "<"),
          annotated_types.Le: ("le", "<=")}


def yaml_value(value: Any) -> str:
    """A default as it is written in YAML: ``null``, ``true``, ``[csv, tensorboard]``, ``{}``."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def yaml_type(hint: Any, plural: bool = False) -> str:
    """``int > 0``, ``list of components``, ``str or null``, ``` `a`, `b` or `c` ```: a type as YAML users read it."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint == config.ComponentSpec:
        return "components" if plural else "component"
    if origin is typing.Annotated:
        return constrained(yaml_type(args[0], plural), hint.__metadata__)
    if origin is typing.Literal:
        names = [f"`{yaml_value(a)}`" for a in args]
        return " or ".join(filter(None, [", ".join(names[:-1]), names[-1]]))
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        component = set(kept) == set(typing.get_args(config.ComponentSpec))
        names = [yaml_type(config.ComponentSpec, plural)] if component else [yaml_type(a, plural) for a in kept]
        return " or ".join(names + ["null"] * (len(kept) < len(args)))
    if origin is list:
        return "list" if args[0] is Any else "list of " + yaml_type(args[0], plural=True)
    if origin is dict:
        return "mapping" if args[1] is Any else f"`{{{yaml_type(args[0])}: {yaml_type(args[1])}}}`"
    if isinstance(hint, type) and issubclass(hint, pydantic.BaseModel):
        return "mappings" if plural else "mapping"
    if isinstance(hint, type) and issubclass(hint, pydantic.ByteSize):
        return "bytes"
    return "any" if hint is Any else hint.__name__


def constrained(text: str, metadata: Any) -> str:
    """``text`` with pydantic's constraints: ``int > 0``, ``int, 0 to 4294967295``, ``str, not empty``."""
    bounds = {BOUNDS[type(m)][1]: getattr(m, BOUNDS[type(m)][0]) for m in metadata if type(m) in BOUNDS}
    if ">=" in bounds and "<=" in bounds:
        text += f", {bounds.pop('>=')} to {bounds.pop('<=')}"
    text = " ".join([text, *(f"{op} {value}" for op, value in bounds.items())])
    if any(isinstance(m, annotated_types.MinLen) and m.min_length == 1 for m in metadata):
        text += ", not empty"
    return text


def field_default(model: type[pydantic.BaseModel], key: str, field: FieldInfo) -> str:
    if f"{model.__name__}.{key}" in DEFAULTS:
        return DEFAULTS[f"{model.__name__}.{key}"]
    if field.is_required():
        return "required"
    if isinstance(field.default, pydantic.BaseModel):
        return "see below"
    return f"`{yaml_value(field.default)}`"


def meanings(table: str) -> dict[str, str]:
    """The ``meaning`` cell of each row of a rendered table, by key."""
    rows = (re.split(r"(?<!\\)\|", line)[1:-1] for line in table.splitlines() if line.startswith("| `"))
    return {cells[0].strip().strip("`"): cells[-1].strip() for cells in rows}


def table(model: type[pydantic.BaseModel], previous: str) -> str:
    known = meanings(previous)
    rows = [
        f"| `{key}` | {constrained(yaml_type(field.annotation), field.metadata)} | {field_default(model, key, field)} | {known.get(key, '')} |\n"
        for key, field in model.model_fields.items()
    ]
    return HEAD + "".join(rows)


def render(page: str) -> str:
    """``page`` (docs/config.md) with every marked table rebuilt from its model."""
    return MARKER.sub(lambda m: m.group(1) + table(getattr(config, m.group(2)), m.group(3)) + m.group(4), page)


def undocumented(page: str) -> list[str]:
    """``Model.key`` of every generated row whose meaning is empty."""
    return [
        f"{m.group(2)}.{key}" for m in MARKER.finditer(page) for key, meaning in meanings(m.group(3)).items() if not meaning
    ]
