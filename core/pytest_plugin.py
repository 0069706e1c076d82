"""pytest fixtures for a plugin's tests, on :mod:`core.testing` (entry point ``pytest11``:
loaded in every pytest session of an environment with core-train; ``-p no:core_train``
leaves it out). List your plugin modules that are not installed in a ``core_plugins``
fixture of your ``conftest.py``::

    @pytest.fixture
    def core_plugins():
        return [my_plugin]
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


@pytest.fixture
def core_plugins() -> list[ModuleType | str]:
    """The plugin modules under test that are not installed (none); override it to add yours."""
    return []


@pytest.fixture
def core_registry(core_plugins: list[ModuleType | str]) -> Any:
    """:func:`core.testing.registry` of ``core_plugins``: the installed plugins, ``tiny`` and yours."""
    from core.testing import registry

    return registry(*core_plugins)


@pytest.fixture
def tiny_dataset() -> Any:
    """A :class:`core.testing.TinyDataset` with its defaults (the format ``tiny``)."""
    from core.testing import TinyDataset

    return TinyDataset()


@pytest.fixture
def run_config(core_registry: Any, tmp_path: Path) -> Callable[[dict[str, Any]], dict[str, float]]:
    """:func:`core.testing.run_config` in ``core_registry``, writing the run into ``tmp_path``."""
    from core.testing import run_config as run

    return lambda config: run(config, registry=core_registry, output_dir=tmp_path)
