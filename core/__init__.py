"""core-train: a plugin framework for training vision and neuroscience models on Lightning.

Plugin authors need only this module, and :mod:`core.testing` for their tests::

    from core import hookimpl, Transform, DEVICE

Importing it is cheap: torch and Lightning load only when a run needs them.
"""

import pluggy

from core.errors import ConfigError, CoreError, DataError, PluginError, PluginUnavailable
from core.kinds import (
    Analysis,
    Layout,
    DEVICE,
    PREPARE,
    SPLITS,
    Batch,
    Command,
    DataFormat,
    DatasetMeta,
    DatasetTool,
    DiskSplit,
    FormatWrapper,
    InOrder,
    Model,
    Sampler,
    Split,
    Step,
    StorageBackend,
    Stream,
    Transform,
    layouts,
    weights_restored,
)

hookimpl = pluggy.HookimplMarker("core")
"""Marks a function in a plugin module as the implementation of a core hook."""


def load_run(run_dir: str, checkpoint: str | None = "best"):  # noqa: ANN201 (a core.evaluate.LoadedRun; lazy import)
    """A trained run for a notebook: its config, module with the checkpoint's weights and
    DataModule (see :func:`core.evaluate.load_run` and docs/notebook.md)."""
    from core.evaluate import load_run as load

    return load(run_dir, checkpoint)

__all__ = [
    "Analysis",
    "DEVICE",
    "PREPARE",
    "SPLITS",
    "Batch",
    "Command",
    "ConfigError",
    "CoreError",
    "DataError",
    "DataFormat",
    "DatasetMeta",
    "DatasetTool",
    "DiskSplit",
    "FormatWrapper",
    "InOrder",
    "layouts",
    "Layout",
    "Model",
    "PluginError",
    "PluginUnavailable",
    "Sampler",
    "Split",
    "Step",
    "StorageBackend",
    "Stream",
    "Transform",
    "hookimpl",
    "load_run",
    "weights_restored",
]
