"""The errors a user can cause, each rendered as one clear message (never a traceback).

Every message says what happened, where (file, YAML path, plugin) and what to do next.
The CLIs catch :class:`CoreError` and print ``str(error)``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

# the most characters of a user's value (or of a whole message) an error shows: a value a
# config blew up (a YAML alias bomb, a pasted file) must neither flood the terminal nor take
# long to format
REPR_LIMIT = 200
PATH_LIMIT = 300
MESSAGE_LIMIT = 20_000


class CoreError(Exception):
    """Base of every error the CLIs report as a message instead of a traceback."""


class ConfigError(CoreError):
    """A problem in the run's YAML: ``path`` is the dotted YAML path (``data.batch_size``)."""

    def __init__(self, path: str, message: str, fix: str | None = None) -> None:
        path, message = clip(path, PATH_LIMIT), clip(message, MESSAGE_LIMIT)
        fix = clip(fix, MESSAGE_LIMIT) if fix else fix
        self.path = path
        self.message = message
        self.fix = fix
        where = f"config error at {path}" if path else "config error"
        text = f"{where}: {message}"
        if fix:
            text += f"\n  fix: {fix}"
        super().__init__(text)


class PluginError(CoreError):
    """A plugin that cannot be used: invalid hooks, conflicting names, failed import."""


class PluginUnavailable(ImportError):
    """Raised by a plugin's registration module when an optional dependency is missing.

    The registry lists the plugin as ``unavailable`` with this message (no warning at every
    start), and a run naming one of its components fails with it: say how to install.
    ``provides``: the names its components would have, so that only a run naming one of them
    hears of it (without it, a run naming any unknown component does).
    """

    def __init__(self, message: str, provides: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.provides = tuple(provides)


class DataError(CoreError):
    """A dataset on disk that cannot be read as the run asks (missing, truncated, inconsistent)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def choices_text(choices: Iterable[str]) -> str:
    """A sorted, quoted list of names for an error message."""
    names = sorted(choices)
    return ", ".join(f"'{n}'" for n in names) if names else "(none)"


def clip(text: str, limit: int) -> str:
    """``text``, cut to ``limit`` characters with a note of how many were left out."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more characters)"


class _Full(Exception):
    pass


def short_repr(value: Any, limit: int = REPR_LIMIT) -> str:
    """``repr(value)`` for an error message, cut at ``limit`` characters, in time bounded by
    ``limit`` however large (or self-referencing) the value is: the whole ``repr`` of a
    structure a YAML alias bomb made would not finish."""
    out: list[str] = []
    size = 0

    def put(text: str) -> None:
        nonlocal size
        out.append(text)
        size += len(text)
        if size > limit:
            raise _Full

    def walk(v: Any, active: frozenset[int]) -> None:
        if isinstance(v, dict | list | tuple):
            if id(v) in active:
                put("...")
                return
            active = active | {id(v)}
            if isinstance(v, dict):
                put("{")
                for i, (key, item) in enumerate(v.items()):
                    put(", " if i else "")
                    walk(key, active)
                    put(": ")
                    walk(item, active)
                put("}")
            else:
                put("[" if isinstance(v, list) else "(")
                for i, item in enumerate(v):
                    put(", " if i else "")
                    walk(item, active)
                put("]" if isinstance(v, list) else ("," if len(v) == 1 else "") + ")")
        elif isinstance(v, str | bytes) and len(v) > limit:
            put(repr(v[: limit + 1]))
        elif isinstance(v, int) and v.bit_length() > 4 * limit:  # repr() refuses past 4,300 digits
            put(f"<an integer of {v.bit_length():,} bits>")
        else:
            try:
                put(repr(v))
            except _Full:
                raise
            except Exception:  # a repr that fails: name the type instead
                put(f"<{type(v).__name__}>")

    try:
        walk(value, frozenset())
    except _Full:
        return "".join(out)[:limit] + "..."
    return "".join(out)


class Stopped(CoreError):
    """Training stopped by a signal after saving ``checkpoint``; the exit status is 128 + signal."""

    def __init__(self, signum: int, checkpoint: Any, epoch: int, step: int,
                 resume: str = "core-train --config <this run's YAML> --resume") -> None:
        import signal

        self.signum, self.checkpoint, self.epoch, self.step = signum, checkpoint, epoch, step
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name} at epoch {epoch}, step {step}; saved {checkpoint}\n"
                         f"  continue with: {resume}")

    @property
    def exit_status(self) -> int:
        return 128 + self.signum
