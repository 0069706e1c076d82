"""Validates a component's YAML options against its factory's signature and type hints.

The signature is the schema (as in Lightning's CLI): every keyword argument is an option,
its type hint is the type, its default makes it optional. Nothing is built until the
options pass, and each error names the YAML path, the value and what was expected.
"""

from __future__ import annotations

import collections.abc
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from pathlib import PurePath
from typing import Any

import annotated_types
import pydantic
import yaml

from core.config import ComponentSpec
from core.errors import ConfigError, did_you_mean, short_repr


@lru_cache(maxsize=None)
def _schema(factory: Callable[..., Any], skip: tuple[str, ...]) -> tuple[type[pydantic.BaseModel], frozenset[str], bool]:
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target, include_extras=True)  # Annotated constraints (Gt(0)) kept
    except Exception:  # unresolvable annotations: fall back to unchecked values
        hints = {}
    fields: dict[str, Any] = {}
    var_keyword = False
    params = list(inspect.signature(factory).parameters.values())
    for param in params:
        if param.name in skip or param.kind in (param.VAR_POSITIONAL, param.POSITIONAL_ONLY):
            continue
        if param.kind == param.VAR_KEYWORD:
            var_keyword = True
            continue
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints.get(param.name, Any), default)
    model = pydantic.create_model(
        f"{getattr(factory, '__name__', 'factory')}Options",
        __config__=pydantic.ConfigDict(arbitrary_types_allowed=True, extra="allow" if var_keyword else "forbid"),
        **fields,
    )
    return model, frozenset(fields), var_keyword


def option_names(factory: Callable[..., Any], skip: tuple[str, ...] = ()) -> frozenset[str]:
    """The options ``factory`` takes: its keyword arguments but ``skip`` (what the core passes itself)."""
    return _schema(factory, skip)[1]


def yaml_value(value: Any) -> str:
    """A value as it is written in YAML: ``null``, ``true``, ``[csv, tensorboard]``, ``{}``; a
    string that YAML would read as something else is quoted (``'1'``, ``'null'``, ``''``)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        try:
            plain = yaml.safe_load(value) == value
        except yaml.YAMLError:
            plain = False
        return value if plain and value.strip() == value else "'" + value.replace("'", "''") + "'"
    return str(value)


_BOUNDS = {annotated_types.Gt: ("gt", ">"), annotated_types.Ge: ("ge", ">="), annotated_types.Lt: ("lt", "<"),
           annotated_types.Le: ("le", "<=")}
_COMPONENT = set(typing.get_args(ComponentSpec))  # str | {name: options}: a component as YAML names it


def describe_type(hint: Any, plural: bool = False, metadata: Iterable[Any] = ()) -> str:
    """A type as a YAML user reads it: ``int``, ``list of str``, ``mapping of str to float``,
    ``one of min, max``, ``str or null``, ``int > 0``, ``component``. ``core-plugins`` (text
    and ``--json``), error messages and the reference docs all print this text; ``plural``
    names the items of a list (``list of components``); ``metadata`` holds pydantic's
    constraints of a field (``Gt(0)``, ``MinLen(1)``)."""
    return constrained(_describe(hint, plural), metadata)


def _describe(hint: Any, plural: bool) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is inspect.Parameter.empty:
        return "any"
    if hint is None or hint is type(None):
        return "null"
    if origin is typing.Annotated:
        return constrained(_describe(args[0], plural), hint.__metadata__)
    if origin is typing.Literal:
        return _one_of(list(args))
    if origin in (typing.Union, types.UnionType):
        return _union(args, plural)
    if isinstance(origin, type) and issubclass(origin, collections.abc.Mapping):
        key, value = args or (Any, Any)
        return "mapping" if value is Any else f"mapping of {_describe(key, False)} to {_grouped(value)}"
    if isinstance(origin, type) and issubclass(origin, collections.abc.Iterable) and origin not in (str, bytes):
        items = [a for a in args if a is not Ellipsis]
        if origin is tuple and len(args) > 1 and args[-1] is not Ellipsis:  # a fixed tuple: one type per position
            return "[" + ", ".join(_describe(a, False) for a in args) + "]"
        if not items or items[0] is Any:
            return "list"
        item = _grouped(items[0], plural=True)
        return f"list, each {item}" if item.startswith("one of ") else f"list of {item}"
    if isinstance(hint, type) and issubclass(hint, pydantic.ByteSize):
        return "bytes"
    if isinstance(hint, type) and issubclass(hint, pydantic.BaseModel):
        return "mappings" if plural else "mapping"
    if isinstance(hint, type) and issubclass(hint, PurePath):
        return "path"
    if hint is dict:
        return "mapping"
    if hint in (list, tuple):
        return "list"
    name = getattr(hint, "__name__", None)
    return name if name and not args else str(hint).replace("typing.", "")


def _grouped(hint: Any, plural: bool = False) -> str:
    """The type of a list's items or a mapping's values; alternatives in parentheses, so that
    ``list of (int or str) or null`` reads one way only."""
    text = _describe(hint, plural)
    return f"({text})" if " or " in text else text


def _one_of(values: list[Any]) -> str:
    """``one of a, b, null`` (the values as YAML writes them); a single value alone."""
    shown = [yaml_value(v) for v in values]
    return shown[0] if len(shown) == 1 else "one of " + ", ".join(shown)


def _union(args: tuple[Any, ...], plural: bool) -> str:
    """``str or list of str or null``, in the union's order; its literal values go together as
    one ``one of ...`` (with ``null`` among them when every member is a value)."""
    kept = [a for a in args if a is not type(None)]
    nullable = len(kept) < len(args)
    if set(kept) == _COMPONENT:
        return " or ".join(["components" if plural else "component"] + ["null"] * nullable)
    literals = [v for a in kept if typing.get_origin(a) is typing.Literal for v in typing.get_args(a)]
    if len(literals) and all(typing.get_origin(a) is typing.Literal for a in kept):
        return _one_of(literals + [None] * nullable)
    names: list[str] = []
    for member in kept:
        if typing.get_origin(member) is not typing.Literal:
            names.append(_describe(member, plural))
        elif literals:  # the first literal member stands for all of them
            names.append(_one_of(literals))
            literals = []
    return " or ".join(names + ["null"] * nullable)


def constrained(text: str, metadata: Iterable[Any]) -> str:
    """``text`` with pydantic's constraints: ``int > 0``, ``int, 0 to 4294967295``, ``str, not empty``."""
    metadata = list(metadata)
    bounds = {_BOUNDS[type(m)][1]: getattr(m, _BOUNDS[type(m)][0]) for m in metadata if type(m) in _BOUNDS}
    if ">=" in bounds and "<=" in bounds:
        text += f", {bounds.pop('>=')} to {bounds.pop('<=')}"
    text = " ".join([text, *(f"{op} {value}" for op, value in bounds.items())])
    if any(isinstance(m, annotated_types.MinLen) and m.min_length == 1 for m in metadata):
        text += ", not empty"
    return text


_MARK = re.compile(r"((?:``\w+``,\s*)*``\w+``):\s")  # ``name``: or ``a``, ``b``: (options sharing one text)


def first_sentence(text: str) -> str:
    """``text`` up to the end of its first sentence (a ``.`` before a capital letter or a ``literal``)."""
    return re.split(r"(?<=[.!?])\s+(?=[A-Z`])", text.strip(), maxsplit=1)[0]


def option_docs(factory: Callable[..., Any], skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Each option of ``factory`` as ``{name, type, required, default, doc}`` (no ``default``
    when required), for ``core-plugins show`` and the reference docs. ``doc`` is the text after
    ``name``: (or after ``name:`` at a line's start) in the factory's docstrings: its first
    sentence, cut at the next such marker; see docs/writing-plugins.md, "Document the options"."""
    model, known, _ = _schema(factory, skip)
    texts: dict[str, str] = {}
    docs = [factory.__doc__, factory.__init__.__doc__ if inspect.isclass(factory) else None]
    for paragraph in re.split(r"\n\s*\n", "\n\n".join(inspect.cleandoc(doc) for doc in docs if doc)):
        text = " ".join(re.sub(r"^(\w+):\s", r"``\1``: ", line.strip()) for line in paragraph.splitlines())
        marks = [m for m in _MARK.finditer(text) if set(re.findall(r"``(\w+)``", m.group(1))) & known]
        for mark, after in zip(marks, [*marks[1:], None]):
            for name in re.findall(r"``(\w+)``", mark.group(1)):
                texts.setdefault(name, first_sentence(text[mark.end():after.start() if after else None]))
    rows = []
    for name, field in model.model_fields.items():
        row = {"name": name, "type": describe_type(field.annotation, metadata=field.metadata),
               "required": field.is_required()}
        rows.append({**row, **({} if row["required"] else {"default": field.default}), "doc": texts.get(name, "")})
    return rows


def validate_options(
    factory: Callable[..., Any],
    options: Mapping[str, Any],
    path: str,
    what: str,
    skip: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Check ``options`` against ``factory``'s signature; return them converted to their types.

    ``path`` is the YAML path of the options mapping, ``what`` names the component in
    messages (``"transform 'pixelnorm'"``); ``skip`` lists arguments the core passes itself.
    """
    model, known, var_keyword = _schema(factory, skip)
    if not var_keyword:
        for key in options:
            if key not in known:
                raise ConfigError(
                    f"{path}.{key}",
                    f"{what} has no option '{key}'{did_you_mean(key, known)}",
                    fix=f"its options are: {', '.join(sorted(known)) or '(none)'}",
                )
    try:
        validated = model.model_validate(dict(options))
    except pydantic.ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(part) for part in err["loc"])
        key = str(err["loc"][0]) if err["loc"] else ""
        if err["type"] == "missing":
            raise ConfigError(f"{path}.{key}", f"{what} needs option '{key}'", fix=f"add '{key}: <value>'") from None
        field = model.model_fields.get(key)
        expected = describe_type(field.annotation, metadata=field.metadata) if field is not None else "?"
        raise ConfigError(
            f"{path}.{loc}",
            f"{short_repr(err.get('input'))} is not valid for option '{key}' of {what}: expected {expected} ({err['msg']})",
        ) from None
    return {key: getattr(validated, key) for key in options}
