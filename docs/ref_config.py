"""Renders the config-keys tables of docs/config.md from the pydantic models in core/config.py.

Each table sits between ``<!-- generated: config keys of MODEL ... -->`` and
``<!-- end generated -->``. The rows, their order, types and defaults come from the model
(types as ``core.options.describe_type`` writes them, as ``core-plugins`` and error messages do);
the ``meaning`` column is prose kept from the page (matched by key), so a new key gets an
empty meaning that :func:`undocumented` reports.
"""

from __future__ import annotations

import re

import pydantic
from pydantic.fields import FieldInfo

from core import config
from core.options import describe_type, yaml_value

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
        f"| `{key}` | {describe_type(field.annotation, metadata=field.metadata)} | {field_default(model, key, field)} | {known.get(key, '')} |\n"
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
