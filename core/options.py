"""Validates a component's YAML options against its factory's signature and type hints.

The signature is the schema (as in Lightning's CLI): every keyword argument is an option,
its type hint is the type, its default makes it optional. Nothing is built until the
options pass, and each error names the YAML path, the value and what was expected.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import pydantic

from core.errors import ConfigError, did_you_mean, short_repr


@lru_cache(maxsize=None)
def _schema(factory: Callable[..., Any], skip: tuple[str, ...]) -> tuple[type[pydantic.BaseModel], frozenset[str], bool]:
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target)
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


def describe_type(hint: Any) -> str:
    """``int``, ``list[str]``, ``one of 'a', 'b'``: a type as a user reads it."""
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(hint))
    return getattr(hint, "__name__", None) if not typing.get_args(hint) else str(hint).replace("typing.", "")


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
        row = {"name": name, "type": describe_type(field.annotation), "required": field.is_required()}
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
        expected = describe_type(model.model_fields[key].annotation) if key in model.model_fields else "?"
        raise ConfigError(
            f"{path}.{loc}",
            f"{short_repr(err.get('input'))} is not valid for option '{key}' of {what}: expected {expected} ({err['msg']})",
        ) from None
    return {key: getattr(validated, key) for key in options}
