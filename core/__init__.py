"""core-train: a plugin framework for training vision and neuroscience models on Lightning.

Plugin authors need only this module::

    from core import hookimpl, Transform, DEVICE

Importing it is cheap: torch and Lightning load only when a run needs them.
"""

import pluggy

from core.errors import ConfigError, CoreError, DataError, PluginError, PluginUnavailable
from core.kinds import (
    Layout,
    DEVICE,
    PREPARE,
    SPLITS,
    Batch,
    DataFormat,
    DatasetMeta,
    DatasetTool,
    DiskSplit,
    InOrder,
    Model,
    Sampler,
    Split,
    Step,
    StorageBackend,
    Stream,
    Transform,
    layouts,
)

hookimpl = pluggy.HookimplMarker("core")
"""Marks a function in a plugin module as the implementation of a core hook."""

__all__ = [
    "DEVICE",
    "PREPARE",
    "SPLITS",
    "Batch",
    "ConfigError",
    "CoreError",
    "DataError",
    "DataFormat",
    "DatasetMeta",
    "DatasetTool",
    "DiskSplit",
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
]
