"""The hooks a core-train plugin implements.

Every hook is a *registration* hook: it takes no arguments and returns a mapping
``{name: factory}``. A factory is a class or function whose keyword arguments are the
component's options, with type hints and defaults: the registry validates the YAML options
of a run against that signature before anything is built.

A factory may also be given as a string ``"package.module:attribute"``; the registry imports
it only when a run uses the component. Use this to keep the module named by your entry point
light (``core-plugins`` then lists your plugin without importing torch, h5py, ffcv, ...).

Plugins implement hooks with :data:`core.hookimpl`::

    from core import hookimpl

    @hookimpl
    def core_transforms():
        return {"invert": "my_plugin.transforms:Invert"}

and publish the module under the entry-point group ``core.plugins``. See
``docs/writing-plugins.md`` for a complete example.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("core")

Factories = dict[str, Any]


@hookspec
def core_data_formats() -> Factories:
    """Return the dataset formats this plugin provides, ``{name: factory}``.

    A format opens a dataset on disk and describes it. The factory is called with the
    options of ``data.format`` and returns a :class:`core.DataFormat`.

    Called once when the registry loads, to learn the names; the factory itself is called
    only when a run names the format (``--dry-run`` included: it reads metadata, no samples).

    Example::

        @hookimpl
        def core_data_formats():
            return {"digits": "plugins.digits.format:Digits"}

    Used in a run as ``data: {format: {digits: {image_size: 32}}}``.
    """


@hookspec
def core_format_wrappers() -> Factories:
    """Return the format wrappers this plugin provides, ``{name: factory}``.

    A format wrapper gives every format, built-in or third-party, options beside its own
    and changes the format they are given to (which samples, which labels), and may write
    files into the run directory. The factory's options are its keyword arguments after
    ``fmt`` and ``path``; the core takes them off any format's options that hold them and
    calls ``factory(fmt, path, **options)`` with the built format. The factory is a subclass
    of :class:`core.FormatWrapper` (its classmethod ``write_run_files`` runs at every run
    start). A format's options that no wrapper takes stay the format's.

    Called once when the registry loads; the factories are imported by every run (to learn
    their options) and called when a format's options hold one of them.

    Example::

        @hookimpl
        def core_format_wrappers():
            return {"class_groups": "plugins.class_groups.subset:ClassSubset"}

    Used in a run as ``data: {format: {digits: {image_size: 16, classes: [0, 1, 7]}}}``.
    """


@hookspec
def core_storage_backends() -> Factories:
    """Return the storage backends this plugin provides, ``{name: factory}``.

    A storage backend decides how an in-RAM dataset is held (its dtype), which transforms
    run once at preparation and which per batch on the device, and finishes each batch on
    the device. The factory is called with the options of ``data.storage`` and returns a
    :class:`core.StorageBackend`.

    Called once when the registry loads; the factory is called when a run names the backend.

    Example::

        @hookimpl
        def core_storage_backends():
            return {"float32": "plugins.cast.storage:Float32Storage"}

    Used in a run as ``data: {storage: float32}``.
    """


@hookspec
def core_transforms() -> Factories:
    """Return the transforms this plugin provides, ``{name: factory}``.

    A transform is a named operation on a batch of samples that declares the stages it
    supports: ``prepare`` (once, on the CPU, when the dataset is materialised) and/or
    ``device`` (per batch, on the accelerator). The factory is called with the transform's
    options and returns a :class:`core.Transform`.

    Called once when the registry loads; each factory is called when a run lists it.

    Example::

        @hookimpl
        def core_transforms():
            return {"pixelnorm": "plugins.pixelnorm.transform:PixelNorm"}

    Used in a run as ``data: {transforms: [pixelnorm, {invert: {}}]}``.
    """


@hookspec
def core_samplers() -> Factories:
    """Return the samplers this plugin provides, ``{name: factory}``.

    A sampler picks the order of sample indices for one epoch and one rank. The factory is
    called with the options of ``data.sampler`` and returns a :class:`core.Sampler`.

    Called once when the registry loads; the factory is called when a run names the sampler.

    Example::

        @hookimpl
        def core_samplers():
            return {"random": "plugins.samplers.order:RandomSampler"}

    Used in a run as ``data: {sampler: random}``.
    """


@hookspec
def core_models() -> Factories:
    """Return the models this plugin provides, ``{name: factory}``.

    A model is a ``torch.nn.Module`` built from the dataset's metadata. The factory is
    called as ``factory(meta, **options)`` where ``meta`` is the :class:`core.DatasetMeta`
    of the run's data (input shape, heads); its forward takes the batch dict and returns
    ``{head: logits}``. See :class:`core.Model`.

    Called once when the registry loads; the factory is called when a run names the model.

    Example::

        @hookimpl
        def core_models():
            return {"simple_cnn": "plugins.simple_cnn.model:SimpleCNN"}

    Used in a run as ``model: {simple_cnn: {conv1: 16}}``.
    """


@hookspec
def core_data_tools() -> Factories:
    """Return the dataset tools this plugin provides, ``{name: factory}``.

    A dataset tool writes, inspects and validates datasets of one on-disk format for
    ``core-data``: ``core-data convert --to NAME`` writes any map-style format into it,
    ``core-data inspect`` and ``core-data validate`` describe and check a path. The factory
    takes no arguments and returns a :class:`core.DatasetTool`.

    Called once when the registry loads; the factory is called when ``core-data`` needs it.

    Example::

        @hookimpl
        def core_data_tools():
            return {"cifar100mh": "plugins.cifar100mh.tool:Cifar100MHTool"}
    """


@hookspec
def core_loggers() -> Factories:
    """Return the experiment loggers this plugin provides, ``{name: factory}``.

    A logger receives the run's metrics and hyperparameters. The factory is called as
    ``factory(run_dir, **options)`` where ``run_dir`` is the run directory (a
    ``pathlib.Path``; its name is the run's name) and returns a Lightning logger
    (``lightning.pytorch.loggers.Logger``). Write into ``run_dir`` unless an option says
    otherwise. A factory whose module raises :class:`core.PluginUnavailable` when imported
    (an optional dependency is missing) makes the logger unavailable: skipped with a
    warning when it is one of the defaults, an error when the run lists it.

    Called once when the registry loads; the factory is called when the trainer is built
    (``--dry-run`` checks the name and the options, and imports the factory).

    Example::

        @hookimpl
        def core_loggers():
            return {"tensorboard": "plugins.loggers.tensorboard:tensorboard"}

    Used in a run as ``logging: [csv, {tensorboard: {}}]``.
    """


@hookspec
def core_callbacks() -> Factories:
    """Return the Lightning callbacks this plugin provides, ``{name: factory}``.

    The factory is called with the callback's options and returns a
    ``lightning.pytorch.callbacks.Callback``. Callbacks see the LightningModule in their
    hooks: ``pl_module.monitor`` is the metric the run's best checkpoint follows.

    Called once when the registry loads; the factory is called when the trainer is built
    (and once by ``--dry-run``, to check the options).

    Example::

        @hookimpl
        def core_callbacks():
            return {"early_stopping": "plugins.callbacks.lightning:early_stopping"}

    Used in a run as ``callbacks: [lr_monitor, {early_stopping: {patience: 5}}]``.
    """


@hookspec
def core_commands() -> Factories:
    """Return the ``core-train`` subcommands this plugin provides, ``{name: factory}``.

    A command is a verb of ``core-train`` beside its own ``fit``, ``validate`` and ``test``
    (``core-train NAME --config run.yaml ...``). The factory takes no arguments and returns
    a :class:`core.Command`: its help line, its flags, and what it does with the parsed
    arguments and the run's config.

    Called once when the registry loads; every factory is imported and called each time
    ``core-train`` starts (its flags are part of the command line), so the module it names
    must import nothing heavy: import torch and friends in ``run``.

    Example::

        @hookimpl
        def core_commands():
            return {"predict": "plugins.predict.command:Predict"}

    Used as ``core-train predict --config run.yaml --split val``.
    """


@hookspec
def core_analyses() -> Factories:
    """Return the analyses this plugin provides, ``{name: factory}``.

    An analysis evaluates a trained model after the run's test; a run asks for it with a
    top-level section named after it, whose mapping is the factory's options. The factory
    returns a :class:`core.Analysis`.

    Called once when the registry loads; the factory is called when a run that has the
    section is resolved (``--dry-run`` included).

    Example::

        @hookimpl
        def core_analyses():
            return {"experiment": "plugins.experiment.sweep:ExperimentSweep"}

    Used in a run as ``experiment: {parameter: stimulus_contrast.stimulus_contrast, values: [0.2, 1.0]}``.
    """
