"""What a plugin's own tests need: a registry, its components checked and built as a run
would, a tiny dataset and a few real training steps::

    from core.testing import build, check_component, registry, run_config

    plugins = registry(my_plugin)  # the installed plugins, the format 'tiny' and my_plugin
    invert = build("transform", "invert", {"gain": 2.0}, registry=plugins)
    check_component("transform", "invert", {"gian": 2.0}, registry=plugins)  # ConfigError: ... no option 'gian'
    metrics = run_config({"data": {"format": "tiny", "transforms": ["pixelnorm", "invert"]},
                          "model": "simple_cnn"}, registry=plugins)

:mod:`core.pytest_plugin` gives them as fixtures. Host-synchronisation counting
(:class:`HostSyncs`, :func:`count_training_syncs`) lives in :mod:`core.host_syncs` and is
re-exported here. Importing this module imports neither torch nor Lightning.
"""

from __future__ import annotations

import csv
import importlib
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from core import SPLITS, DataFormat, DatasetMeta, Layout, Split, hookimpl
from core.registry import Registry

if TYPE_CHECKING:
    from core.resolve import Checked

# where a run names each kind: a checked component's errors give the path a run's would
# (a format wrapper's options sit in the format's mapping, an analysis' are the section named after it)
PATHS = {"format": "data.format", "format_wrapper": "data.format.tiny", "storage": "data.storage",
         "transform": "data.transforms.0", "sampler": "data.sampler", "model": "model", "logger": "logging.0",
         "callback": "callbacks.0", "tool": "--to", "command": "command", "analysis": None}
# run_config's additions to a config (each one the config sets wins): a few steps on the CPU
RUN_DEFAULTS = {"name": "test", "logging": ["csv"], "callbacks": []}
TRAINER_DEFAULTS = {"accelerator": "cpu", "devices": 1, "max_epochs": 1, "limit_train_batches": 2,
                    "limit_val_batches": 1, "limit_test_batches": 1, "enable_progress_bar": False,
                    "enable_model_summary": False}


class TinyDataset(DataFormat):
    """Format ``tiny``: random uint8 images and labels made in memory, for tests.

    ``n``: samples per split. ``shape``: one sample's stim, whose axes ``axes`` names.
    ``heads``: each label head and its number of classes (default ``{label: 3}``).
    ``fields``: other per-sample arrays as ``{name: [shape, dtype]}`` (``DatasetMeta.fields``),
    e.g. ``{contrast: [[], float32]}``. ``seed``: the random draw."""

    def __init__(self, n: int = 16, shape: tuple[int, ...] = (1, 8, 8), axes: str = "CHW",
                 heads: dict[str, int] | None = None, fields: dict[str, tuple[tuple[int, ...], str]] | None = None,
                 seed: int = 0) -> None:
        if n < 1:
            raise ValueError(f"n must be at least 1, not {n}")
        self.n, self.seed = n, seed
        layout = Layout(tuple(shape), axes)  # ValueError if the axes do not match the shape
        fields = {name: (tuple(shape), dtype) for name, (shape, dtype) in (fields or {}).items()}
        self._meta = DatasetMeta("tiny", layout.shape, dict(heads or {"label": 3}), dict.fromkeys(SPLITS, n),
                                 stim_axes=layout.axes, fields=fields)

    def meta(self) -> DatasetMeta:
        return self._meta

    def open(self, split: str) -> Split:
        import numpy as np

        rng, meta = np.random.default_rng([self.seed, SPLITS.index(split)]), self._meta
        arrays = {"stim": rng.integers(0, 256, (self.n, *meta.stim_shape), dtype=np.uint8)}
        arrays |= {head: rng.integers(0, classes, self.n) for head, classes in meta.heads.items()}
        arrays |= {name: rng.random((self.n, *shape)).astype(dtype) for name, (shape, dtype) in meta.fields.items()}
        return Split(arrays)


@hookimpl
def core_data_formats() -> dict[str, Any]:
    return {"tiny": TinyDataset}


def registry(*plugins: ModuleType | str) -> Registry:
    """The plugins a run loads (every installed one), this module's format ``tiny``, and
    ``plugins`` (modules or their import names) added as installed ones are; a module
    installed already is not added twice."""
    loaded = Registry.load()
    for plugin in (sys.modules[__name__], *plugins):
        module = importlib.import_module(plugin) if isinstance(plugin, str) else plugin
        if not loaded.manager.is_registered(module):
            loaded.add(module)
    return loaded


def _or_default(given: Registry | None) -> Registry:
    return given if given is not None else registry()


def check_component(kind: str, name: str, options: Mapping[str, Any] | None = None, *,
                    registry: Registry | None = None, path: str | None = None) -> Checked:
    """``{name: options}`` resolved and validated as a run does at ``path`` (default: where a
    run names ``kind``, e.g. ``data.transforms.0``), in ``registry`` (default: :func:`registry`
    with no plugin added). Raises the run's ConfigError; ``.build()`` the result to build it."""
    from core.resolve import check, check_named

    if path is None and kind not in PATHS:
        raise ValueError(f"no component kind '{kind}'; the kinds are: {', '.join(PATHS)}")
    path = path or PATHS[kind] or name
    if kind in ("format_wrapper", "analysis"):  # options not under {name: ...}
        return check_named(_or_default(registry), kind, name, dict(options or {}), path, path)
    return check(_or_default(registry), kind, {name: dict(options or {})}, path)


def build(kind: str, name: str, options: Mapping[str, Any] | None = None, meta: DatasetMeta | None = None, *,
          registry: Registry | None = None, run_dir: str | Path | None = None, fmt: DataFormat | None = None) -> Any:
    """The component built as a run builds it: a model for ``meta`` (default: the tiny
    dataset's), a logger writing into ``run_dir`` (default: a new temporary folder), a
    format wrapper around ``fmt`` (default: a :class:`TinyDataset`)."""
    checked = check_component(kind, name, options, registry=registry)
    if kind == "model":
        from core.resolve import build_model

        return build_model(checked, [meta or TinyDataset().meta()])
    if kind == "logger":
        return checked.build(Path(run_dir or tempfile.mkdtemp(prefix="core-testing-")))
    if kind == "format_wrapper":
        return checked.build(fmt or TinyDataset(), checked.options_path)
    return checked.build()


def run_config(config: Mapping[str, Any], *, registry: Registry | None = None,
               output_dir: str | Path | None = None) -> dict[str, float]:
    """Train ``config`` (a run's YAML as a dict) as ``core-train`` does (check, resolve, run
    directory, fit, test the best checkpoint) and return the final metrics: the last value of
    each column of ``metrics.csv``, then the test metrics. Added unless the config sets them:
    :data:`RUN_DEFAULTS`, :data:`TRAINER_DEFAULTS` (two training steps on the CPU) and
    ``output_dir`` (default: a new temporary folder)."""
    import lightning

    from core.config import parse_config
    from core.memory import check_fits
    from core.paths import check_output_dir
    from core.resolve import check_accelerator, resolve
    from core.run import fit_and_test, prepare_run_dir
    from core.terminal import quiet_terminal

    raw = {**RUN_DEFAULTS, **config, "trainer": {**TRAINER_DEFAULTS, **config.get("trainer", {})}}
    raw.setdefault("output_dir", str(output_dir or tempfile.mkdtemp(prefix="core-testing-")))
    parsed = parse_config(raw)
    with quiet_terminal():
        lightning.seed_everything(parsed.seed, workers=True, verbose=False)
        registry = _or_default(registry)
        resolved = resolve(parsed, registry)
        check_accelerator(parsed.trainer)
        check_fits(resolved.memory)
        check_output_dir(parsed)
        run_dir = prepare_run_dir(parsed, resume=False, overwrite=True, registry=registry)
        tested = fit_and_test(resolved, run_dir, resume=False)
    metrics: dict[str, float] = {}
    if (run_dir / "metrics.csv").is_file():
        with open(run_dir / "metrics.csv", newline="") as rows:
            metrics = {key: float(value) for row in csv.DictReader(rows) for key, value in row.items() if value}
    return metrics | tested


def __getattr__(name: str) -> Any:
    if name in ("HostSyncs", "TrainingSyncs", "count_training_syncs"):  # torch is imported only when asked for
        from core import host_syncs

        return getattr(host_syncs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
