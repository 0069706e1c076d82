"""The contract of each component kind: one small base class (or protocol) per kind.

A plugin's factory returns an object meeting one of these contracts. The base classes hold
no state of the core and import nothing heavy, so a plugin module can subclass them freely.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from core.errors import ConfigError, DataError

if TYPE_CHECKING:
    import argparse
    from pathlib import Path

    import numpy as np
    import torch

    from core.config import RunConfig
    from core.registry import Registry
    from core.resolve import ResolvedRun

Batch = dict[str, Any]
"""A batch: a dict of tensors; ``stim`` (B, C, H, W), one integer label per head, masks."""

SPLITS = ("train", "val", "test")
PREPARE, DEVICE = "prepare", "device"


@dataclass(frozen=True)
class Layout:
    """The shape of one sample's ``stim`` and what its axes are: ``C`` channel, ``T`` time,
    ``K`` temporal basis, ``H``/``W`` space. E.g. ``Layout((3, 32, 32), "CHW")``."""

    shape: tuple[int, ...]
    axes: str

    def __post_init__(self) -> None:
        if len(self.shape) != len(self.axes):
            raise ValueError(f"layout {self.axes} does not match shape {self.shape}")

    def size(self) -> int:
        """Values per sample."""
        total = 1
        for n in self.shape:
            total *= n
        return total


@dataclass(frozen=True)
class DatasetMeta:
    """What a format knows about a dataset without reading its samples.

    ``stim_shape`` is the shape of one stored sample's ``stim`` (e.g. ``(3, 32, 32)``) and
    ``stim_axes`` names its axes (``"CHW"``, ``"TCHW"``, ...), ``heads`` maps each label head
    to its number of classes, ``split_sizes`` gives the number of samples per split and
    ``fields`` the other per-sample arrays a batch carries (``responses``, ``contrast``) as
    ``{name: (shape of one sample, dtype)}``, for the memory planner and the models.
    """

    name: str
    stim_shape: tuple[int, ...]
    heads: dict[str, int]
    split_sizes: dict[str, int]
    stim_dtype: str = "uint8"
    stim_axes: str = "CHW"
    fields: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def layout(self) -> Layout:
        return Layout(tuple(self.stim_shape), self.stim_axes)


@dataclass
class Split:
    """One split of a map-style dataset held as arrays: ``stim`` plus one array per head.

    All arrays share their first axis (the sample index).
    """

    fields: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.fields.values())))


class DiskSplit(ABC):
    """A split read from disk a batch at a time (random access, nothing held in RAM).

    The core gathers batches with ``read(indices)`` in DataLoader workers, as it gathers
    from tensors in RAM: the same sampler, the same order. The object is pickled into (or
    forked with) each worker, so file handles must be opened lazily in the process that
    reads, never carried across a fork.
    """

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def read(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """The samples at ``indices`` (in that order), one array per field."""

    def column(self, name: str) -> np.ndarray:
        """One field of every sample (a sampler's weights); override to skip reading ``stim``."""
        import numpy as np

        return self.read(np.arange(len(self)))[name]


class Stream(ABC):
    """A split that delivers its own batches (FFCV's compiled loader, a WebDataset pipeline)
    instead of arrays the core holds in RAM. Batches are dicts like any other; the storage
    backend's ``finish`` and the device-stage transforms still run on the device."""

    @abstractmethod
    def batches(
        self, *, batch_size: int, train: bool, seed: int, epoch: Callable[[], int], rank: int, world_size: int,
        num_workers: int,
    ) -> Iterable[Batch]:
        """An iterable giving one epoch of batches per ``iter()``; ``epoch()`` says which epoch."""


class DataFormat(ABC):
    """Kind ``format``: opens a dataset on disk.

    ``meta()`` must be cheap (headers only: it runs during ``--dry-run``); ``open(split)``
    gives one split's samples as a :class:`Split` (arrays, held in RAM by the storage
    backend) or, when ``streams`` is true (a class or instance attribute), as a
    :class:`Stream` (batches from the format's own loader) or a :class:`DiskSplit` (batches
    read from disk by index). Streamed data is never held in RAM, so prepare-stage
    transforms cannot run on it.
    """

    streams: ClassVar[bool] = False

    @abstractmethod
    def meta(self) -> DatasetMeta: ...

    @abstractmethod
    def open(self, split: str) -> Split | Stream: ...

    def labels(self, split: str) -> dict[str, np.ndarray] | None:
        """Each head's labels of ``split`` when the format can read them without the samples
        (a format wrapper such as class groups then counts split sizes in ``--dry-run``); None
        (the default): not known before the split opens."""
        return None

    def close(self) -> None:
        """Release the files ``open`` keeps open; called when a stage of the run ends (a later
        ``open`` or read opens them again). Within one process (a notebook, a sweep) a file
        left open would be read through its old handle after it is rewritten. Default: nothing."""


class FormatWrapper(DataFormat):
    """Kind ``format_wrapper``: options every format takes beside its own, and the format they change.

    The factory's keyword arguments after ``fmt`` and ``path`` are the wrapper's options (the
    signature is the schema, as for every kind). When a format's options hold any of them,
    the core takes those off before it checks the format, builds the format, and calls
    ``factory(fmt, path, **taken)``: ``fmt`` is the built format (maybe wrapped already),
    ``path`` the YAML path of the format's options (``data.format.hdf5``), for errors raised
    later by ``meta`` or ``open``. Implement ``meta`` and ``open`` (and ``labels`` if known)
    from ``self.fmt``'s; ``streams`` is the wrapped format's.
    """

    def __init__(self, fmt: DataFormat, path: str) -> None:
        self.fmt, self.path = fmt, path
        self.streams = fmt.streams

    def close(self) -> None:
        self.fmt.close()

    def class_maps(self) -> dict[str, Any]:
        """The heads whose classes this wrapper renumbered, ``{head: map}``; a map has
        ``describe()`` (a JSON-able description), ``inverse()`` (original id per new id, or
        None) and ``new_names()`` (a name per new id, or None). ``predict`` writes the original
        classes from them. The default: none."""
        return {}

    @classmethod
    def write_run_files(cls, run_dir: Path, wrapped: dict[str, FormatWrapper]) -> None:
        """Called at every run start with the run's datasets this class wraps, ``{dataset:
        wrapper}`` (``{}`` when none: remove what an earlier run left). Write files atomically
        (:func:`core.files.write_atomic`); the default writes none."""


def wrappers(fmt: DataFormat) -> list[FormatWrapper]:
    """The format wrappers around ``fmt`` (a run's built format), outermost first."""
    found = []
    while isinstance(fmt, FormatWrapper):
        found.append(fmt)
        fmt = fmt.fmt
    return found


class Transform(ABC):
    """Kind ``transform``: a named operation on a batch dict.

    ``stages`` names where it can run: ``prepare`` (once on the CPU at materialisation, on
    float32 chunks) and/or ``device`` (per batch on the accelerator, in the model's dtype).
    ``train_only`` transforms (augmentations) are skipped when evaluating. ``__call__``
    returns the transformed batch; it must not modify its input in place.

    A device-stage transform that sets ``learns`` learns from the training split before the
    first batch (``normalize: {mean: auto}``): see :meth:`fit`.
    """

    stages: ClassVar[frozenset[str]] = frozenset()
    train_only: ClassVar[bool] = False
    learns: bool = False

    @abstractmethod
    def __call__(self, batch: Batch) -> Batch: ...

    def output_layout(self, layout: Layout) -> Layout:
        """One sample's ``stim`` layout after this transform (default: unchanged).

        Raise ``ValueError`` for a layout the transform cannot take; the run then fails
        before loading, naming the transform's YAML path.
        """
        return layout

    def fit(self, stim: Iterable[torch.Tensor], saved: dict[str, Any] | None) -> dict[str, Any]:
        """Learn from the training split (called when ``learns``, before the first batch).

        ``stim`` gives the split's stored ``stim`` in chunks (what the first device-stage
        transform receives, before the cast: a learning transform must be listed first);
        ``saved`` is the state returned in an earlier process of the same run (a resume, an
        evaluation), kept in the run directory: return it unchanged to reuse it without
        reading. The returned state must be JSON (lists, numbers, strings).
        """
        raise NotImplementedError(f"{type(self).__name__} sets learns but has no fit()")


@dataclass(frozen=True)
class Step:
    """A transform as listed in a run: its YAML path, its name and the built object."""

    path: str
    name: str
    transform: Transform


def layouts(start: Layout, steps: list[Step], dataset: str) -> list[Layout]:
    """The ``stim`` layout before each step and after the last (``len(steps) + 1`` entries).

    A transform that cannot take its input layout raises ``ValueError``; that becomes a
    config error at the transform's YAML path.
    """
    found = [start]
    for step in steps:
        try:
            found.append(step.transform.output_layout(found[-1]))
        except ValueError as exc:
            raise ConfigError(step.path, f"transform '{step.name}' of dataset '{dataset}': {exc}") from None
    return found


class StorageBackend(ABC):
    """Kind ``storage``: how an in-RAM dataset is held and finished on the device.

    ``plan`` splits the run's transforms into the prepare stage (run once by
    ``materialise``) and the device stage (run per batch after ``finish``). The default
    plan runs every transform up to the first device-only one at preparation.
    ``bytes_per_value`` is what the memory planner counts per stored ``stim`` value, whatever
    the dataset's ``stim_dtype``; ``check_stim`` refuses a ``stim_dtype`` the backend cannot hold.
    """

    dtype_name: ClassVar[str] = ""
    bytes_per_value: ClassVar[int] = 4

    def plan(self, steps: list[Step], dataset: str) -> tuple[list[Step], list[Step]]:
        prepare: list[Step] = []
        device: list[Step] = []
        for step in steps:
            stages = self.check_stages(step)
            if not device and PREPARE in stages:
                prepare.append(step)
            elif DEVICE in stages:
                device.append(step)
            else:
                first = device[0]
                raise ConfigError(
                    step.path,
                    f"transform '{step.name}' of dataset '{dataset}' runs only at preparation, "
                    f"but it is listed after '{first.name}' ({first.path}), which runs only on "
                    "the device",
                    fix=f"list '{step.name}' before '{first.name}'",
                )
        return prepare, device

    def check_stim(self, dtype: str) -> None:
        """Raise ``ValueError`` when this backend cannot hold ``stim`` stored as ``dtype`` (the
        dataset's ``stim_dtype``); the resolver makes it a config error at ``data.storage``
        naming the backends that can. The default holds any dtype (it casts)."""

    @staticmethod
    def check_stages(step: Step) -> frozenset[str]:
        """The step's stages; a transform that declares none is a config error."""
        stages = step.transform.stages
        if not stages & {PREPARE, DEVICE}:
            raise ConfigError(step.path, f"transform '{step.name}' declares no stage (prepare or device) it can run in",
                              fix="the transform's plugin must set stages = frozenset({'prepare'}) or {'device'}")
        return stages

    @abstractmethod
    def materialise(self, split: Split, prepare: list[Step]) -> dict[str, torch.Tensor]:
        """Hold ``split`` in RAM as tensors, applying the prepare-stage transforms."""

    @abstractmethod
    def finish(self, batch: Batch, dtype: torch.dtype) -> Batch:
        """Turn a stored batch, already on the device, into ``dtype`` (the model's)."""


class Sampler(ABC):
    """Kind ``sampler``: the order of sample indices for one epoch on one rank.

    Every rank must get disjoint indices and the same number of them: :meth:`shard` does
    that for an order of the whole dataset. A sampler that weights samples by their fields
    or labels names them in ``needs`` (fields such as ``contrast``, or label heads; a run
    whose data lacks one fails before loading) and receives the training split's values in
    ``bind``; ``bind_meta`` gives it the dataset's metadata first (its heads and classes:
    it may set ``needs`` there); ``set_step`` tells it the global training step before
    every batch (a curriculum's clock).
    """

    needs: tuple[str, ...] = ()

    def bind_meta(self, meta: DatasetMeta) -> None:
        """The dataset's metadata, when the run is resolved (before ``needs`` is checked);
        raise ``ValueError`` for data the sampler cannot order (a config error at its YAML path)."""

    def bind(self, fields: dict[str, np.ndarray]) -> None:
        """The training split's ``needs`` fields and label heads, once the split is open."""

    def set_step(self, step: int) -> None:
        """The optimiser steps taken so far."""

    @abstractmethod
    def indices(self, n: int, *, epoch: int, seed: int, rank: int, world_size: int) -> np.ndarray: ...

    @staticmethod
    def shard(order: np.ndarray, rank: int, world_size: int) -> np.ndarray:
        """This rank's share of ``order``: strided, padded by wrapping so every rank gets as many."""
        import numpy as np

        if world_size > 1:
            pad = -len(order) % world_size
            order = np.concatenate([order, order[:pad]]) if pad else order
        return order[rank::world_size]


class InOrder(Sampler):
    """Every index once, in order (evaluation uses it)."""

    def indices(self, n: int, *, epoch: int, seed: int, rank: int, world_size: int) -> np.ndarray:
        import numpy as np

        return self.shard(np.arange(n), rank, world_size)


class DatasetTool(ABC):
    """What ``core-data`` does with one on-disk format: write, inspect, validate.

    ``recognises(path)`` says whether ``path`` looks like a dataset of this format (so
    ``inspect`` and ``validate`` need no ``--format``). ``validate`` returns every problem
    found, each naming the file and record; an empty list means valid.
    """

    @abstractmethod
    def recognises(self, path: Path) -> bool: ...

    @abstractmethod
    def write(self, source: DataFormat, out: Path) -> None: ...

    @abstractmethod
    def inspect(self, path: Path) -> dict[str, Any]: ...

    @abstractmethod
    def validate(self, path: Path) -> list[str]: ...

    @staticmethod
    def rows(opened: Split | DiskSplit | Stream, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """Samples ``start`` to ``stop`` (default: the end) of an opened split as arrays, however
        the format holds them (arrays, columns read lazily by slice, a :class:`DiskSplit`)."""
        import numpy as np

        if isinstance(opened, DiskSplit):
            return opened.read(np.arange(start, len(opened) if stop is None else stop))
        if isinstance(opened, Split):
            return {name: np.asarray(values[start:stop]) for name, values in opened.fields.items()}
        raise DataError("core-data convert reads datasets with random access, and this one streams its samples: "
                        "convert from the format it was written from")


class Command(ABC):
    """Kind ``command``: a subcommand of ``core-train`` (``core-train NAME --config run.yaml``).

    ``help`` is its line in ``core-train --help``. ``add_arguments`` adds its flags to an
    argument group titled with its name; every command's flags are parsed whichever command
    is given, so ``check`` runs for each of them before the run starts (``chosen``: whether
    this one was given) and refuses its flags given without it. ``run`` does the work and
    returns the exit status. ``takes_checkpoint``: ``--checkpoint`` goes with it (it
    evaluates a trained run; it calls :func:`core.cli.train.prepare` first, as ``validate``
    and ``test`` do).
    """

    help: ClassVar[str] = ""
    takes_checkpoint: ClassVar[bool] = False

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        """Add this command's flags with ``group.add_argument`` (default: none)."""

    def check(self, args: argparse.Namespace, chosen: bool) -> None:
        """Raise :class:`core.ConfigError` for a misuse of this command's flags (default: none)."""

    @abstractmethod
    def run(self, args: argparse.Namespace, config: RunConfig, registry: Registry) -> int:
        """Do the command for the run ``config`` describes; ``registry`` holds the plugins it selects."""


class Analysis(ABC):
    """Kind ``analysis``: a top-level section of a run, keyed by the analysis' name
    (``experiment: {parameter: ..., values: [...]}``), that evaluates the trained model
    after the run's test.

    The factory takes the section's options. ``plan`` checks them against the resolved run
    before any data is loaded (``--dry-run`` reports its errors; a :class:`core.ConfigError`
    it raises with a path relative to the section is put under the section's key). ``run``
    gets the module (holding the best checkpoint's weights), the run's DataModule, the run
    directory and the run's ``trainer:`` options; it writes the files ``files`` names (which
    ``--overwrite`` removes) and returns metrics to print.
    """

    files: ClassVar[tuple[str, ...]] = ()

    def plan(self, resolved: ResolvedRun) -> None:
        """Check the options against the run (default: nothing to check)."""

    @abstractmethod
    def run(self, module: Any, datamodule: Any, run_dir: Path, trainer: dict[str, Any]) -> dict[str, float]:
        """Evaluate ``module``, write the analysis' files into ``run_dir``; return metrics to print."""


class Model(Protocol):
    """Kind ``model``: a ``torch.nn.Module`` built as ``factory(meta, **options)``.

    ``forward(batch)`` takes the batch dict (``stim`` and friends) and returns
    ``{head: logits}`` with one entry per head of ``meta.heads``.
    """

    def __call__(self, batch: Batch) -> dict[str, torch.Tensor]: ...


_RESTORED: ContextVar[bool] = ContextVar("core_weights_restored", default=False)


def weights_restored() -> bool:
    """True while a model is built whose weights then all come from its run's own checkpoint
    (``--resume``, ``validate``, ``test``, ``predict``, ``experiment``, :func:`core.load_run`):
    a ``pretrained:`` load would be replaced, and its file may be gone since training."""
    return _RESTORED.get()


@contextmanager
def restoring(restored: bool = True) -> Iterator[None]:
    """Models built in this block get their weights from a checkpoint afterwards (:func:`weights_restored`)."""
    token = _RESTORED.set(restored)
    try:
        yield
    finally:
        _RESTORED.reset(token)
