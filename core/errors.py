"""The errors a user can cause, each rendered as one clear message (never a traceback).

Every message says what happened, where (file, YAML path, plugin) and what to do next.
The CLIs catch :class:`CoreError` and print ``str(error)``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CoreError(Exception):
    """Base of every error the CLIs report as a message instead of a traceback."""


class ConfigError(CoreError):
    """A problem in the run's YAML: ``path`` is the dotted YAML path (``data.batch_size``)."""

    def __init__(self, path: str, message: str, fix: str | None = None) -> None:
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
    """


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
