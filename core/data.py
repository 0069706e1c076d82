"""The generic LightningDataModule: format -> storage -> sampler -> batched gather -> device.

Samples are held as tensors in RAM or in accelerator memory (in the storage backend's
dtype; see :mod:`core.placement`). A batch is gathered with one tensor index per field
(no per-sample Python); from RAM it is pinned and copied to a CUDA accelerator ahead of
its step (:mod:`core.prefetch`). It is finished on the device in
``on_after_batch_transfer``: the storage backend's ``finish`` and then the device-stage
transforms.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import lightning
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data import Sampler as TorchSampler

from core.errors import DataError
from core.fitting import learn
from core.shared_memory import Sharing, shard_indices
from core.prefetch import DevicePrefetch, ready_on_current_stream
from core.kinds import Batch, DataFormat, DiskSplit, Sampler, Split, Step, StorageBackend, Stream


class TensorBatches(Dataset):
    """Indexed by a whole batch of indices: one gather per field."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, index: torch.Tensor) -> Batch:
        # index_select is ~20x faster than advanced indexing for uint8 rows on the CPU
        return {key: value.index_select(0, index) for key, value in self.tensors.items()}


class DiskBatches(Dataset):
    """Indexed by a whole batch of indices, read from disk by the format's :class:`DiskSplit`."""

    def __init__(self, split: DiskSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: torch.Tensor) -> Batch:
        return {key: torch.from_numpy(value) for key, value in self.split.read(index.numpy()).items()}


@dataclass
class EpochPosition:
    """Where the training epoch stands, so a run resumed within an epoch continues it exactly:
    the epoch, the global step its order was drawn at (a curriculum's clock) and, after a
    restore, the batches already trained (``restored``), which the epoch's order skips."""

    epoch: int = -1
    start_step: int = 0
    restored: dict[str, int] | None = None

    def begin(self, epoch: int, step: int) -> tuple[int, int]:
        """An epoch's order is being drawn now: the step to draw it at and the batches to skip."""
        restored, self.restored = self.restored, None
        if restored is not None and restored["epoch"] == epoch:
            self.epoch, self.start_step = epoch, restored["start_step"]
            return self.start_step, restored["done"]
        self.epoch, self.start_step = epoch, step
        return step, 0


class Batches:
    """A DataLoader behind a plain iterable. Lightning leaves the order alone (with
    ``overfit_batches`` it would swap a DataLoader's sampler for a per-sample one); the
    order is the core sampler's, one index tensor per batch. The training loader is
    stateful: its position travels in checkpoints (``state_dict``), so a mid-epoch resume
    skips the batches already trained instead of starting the epoch again."""

    def __init__(self, loader: DataLoader, position: EpochPosition | None = None,
                 done: Callable[[], int] = lambda: 0) -> None:
        self.loader, self.position, self.done = loader, position, done

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)

    def state_dict(self) -> dict[str, int]:
        if self.position is None:
            return {}
        return {"epoch": self.position.epoch, "start_step": self.position.start_step, "done": self.done()}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if self.position is not None and state:
            self.position.restored = dict(state)


class IndexBatches(TorchSampler):
    """Yields index tensors of ``batch_size`` from a core sampler, re-drawn every epoch.

    With ``device`` the epoch's order moves there once and batches are index slices of it,
    for data that lives in accelerator memory.
    """

    def __init__(
        self,
        sampler: Sampler,
        n: int,
        batch_size: int,
        drop_last: bool,
        seed: int,
        epoch: Callable[[], int],
        rank: Callable[[], tuple[int, int]],
        device: torch.device | None = None,
        position: EpochPosition | None = None,
        step: Callable[[], int] = lambda: 0,
    ) -> None:
        self.sampler, self.n, self.batch_size, self.drop_last = sampler, n, batch_size, drop_last
        self.seed, self.epoch, self.rank, self.device = seed, epoch, rank, device
        self.position, self.step = position, step

    def _order(self) -> np.ndarray:
        rank, world_size = self.rank()
        return np.asarray(self.sampler.indices(self.n, epoch=self.epoch(), seed=self.seed, rank=rank, world_size=world_size))

    def __iter__(self) -> Iterator[torch.Tensor]:
        skip = 0
        if self.position is not None:  # the training order: drawn at the epoch's first step
            at, skip = self.position.begin(self.epoch(), self.step())
            self.sampler.set_step(at)
        order = torch.from_numpy(self._order().astype(np.int64))
        if self.device is not None:
            order = order.to(self.device)
        stop = len(order) - (len(order) % self.batch_size if self.drop_last else 0)
        yield from torch.split(order[:stop], self.batch_size)[skip:]

    def __len__(self) -> int:
        rank, world_size = self.rank()
        per_rank = -(-self.n // world_size)
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)


@dataclass
class DatasetParts:
    """One dataset of a run as the DataModule uses it; ``name`` goes into each of its batches."""

    name: str
    fmt: DataFormat
    storage: StorageBackend
    prepare: list[Step]
    device: list[Step]
    sampler: Sampler
    opened: dict[str, dict[str, torch.Tensor] | DiskSplit | Stream] = field(default_factory=dict)


class Grouped(Dataset):
    """Several datasets' batch gatherers, indexed by ``(dataset, indices)``: one dataset per batch."""

    def __init__(self, gatherers: list[Dataset], names: list[str]) -> None:
        self.gatherers, self.names = gatherers, names

    def __getitem__(self, key: tuple[int, torch.Tensor]) -> Batch:
        which, index = key
        return {**self.gatherers[which][index], "dataset": self.names[which]}


class GroupedBatches(TorchSampler):
    """Interleaves the batches of several datasets' :class:`IndexBatches`: ``round_robin`` (one
    batch of each in turn while it lasts) or ``proportional`` (a seeded shuffle of all batches,
    so each dataset is seen in proportion to its size throughout the epoch). Every rank gets
    the same number of batches, since each dataset's sampler gives every rank as many."""

    def __init__(self, orders: list[IndexBatches], interleave: str, seed: int, epoch: Callable[[], int],
                 position: EpochPosition | None = None, step: Callable[[], int] = lambda: 0) -> None:
        self.orders, self.interleave, self.seed, self.epoch = orders, interleave, seed, epoch
        self.position, self.step = position, step

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor]]:
        skip = 0
        if self.position is not None:  # the training order: every dataset's drawn at the epoch's first step
            at, skip = self.position.begin(self.epoch(), self.step())
            for order in self.orders:
                order.sampler.set_step(at)
        yield from itertools.islice(self._keys(), skip, None)

    def _keys(self) -> Iterator[tuple[int, torch.Tensor]]:
        batches = [list(order) for order in self.orders]
        if self.interleave == "proportional":
            keys = [(k, b) for k, each in enumerate(batches) for b in each]
            rng = np.random.default_rng([self.seed, self.epoch(), 7])
            yield from (keys[i] for i in rng.permutation(len(keys)))
            return
        for position in range(max(map(len, batches), default=0)):
            yield from ((k, each[position]) for k, each in enumerate(batches) if position < len(each))

    def __len__(self) -> int:
        return sum(len(order) for order in self.orders)


class CoreDataModule(lightning.LightningDataModule):
    """One or more datasets: each held in RAM (storage backend), read from disk by index, or
    streamed by its format; batches of several datasets are interleaved, one dataset per batch."""

    def __init__(
        self,
        datasets: list[DatasetParts],
        eval_sampler: Sampler,
        batch_size: int,
        num_workers: int,
        seed: int,
        placement: str = "host",
        interleave: str = "round_robin",
    ) -> None:
        super().__init__()
        self.datasets, self.by_name = datasets, {d.name: d for d in datasets}
        self.eval_sampler, self.interleave = eval_sampler, interleave
        self.batch_size, self.num_workers, self.seed, self.placement = batch_size, num_workers, seed, placement
        self.predict_split = "test"  # the split `core-train predict` reads
        self.position = EpochPosition()  # of the training epoch, saved in checkpoints through the train loader
        self.run_dir: Path | None = None  # where transforms that learn keep their state (core.fitting)
        self.sharing: Sharing | None = None  # one copy per node under DDP (core.shared_memory)
        self.shard = False  # data.shard: each rank keeps its share of the training split

    @classmethod
    def single(cls, fmt: DataFormat, storage: StorageBackend, prepare: list[Step], device: list[Step], sampler: Sampler,
               eval_sampler: Sampler, batch_size: int, num_workers: int, seed: int, placement: str = "host",
               name: str = "") -> CoreDataModule:
        return cls([DatasetParts(name, fmt, storage, prepare, device, sampler)], eval_sampler, batch_size, num_workers,
                   seed, placement)

    @property
    def splits(self) -> dict[str, dict[str, torch.Tensor]]:
        """The first dataset's splits held in RAM."""
        return {k: v for k, v in self.datasets[0].opened.items() if isinstance(v, dict)}

    @property
    def device(self) -> list[Step]:
        """The first dataset's device-stage steps (experiment sweeps swap one)."""
        return self.datasets[0].device

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",),
                  "predict": (self.predict_split,)}.get(stage or "", ("train", "val", "test"))
        for parts in self.datasets:
            for split in wanted:
                if split in parts.opened:
                    continue
                if self.sharing is not None and not parts.fmt.streams and self.sharing.active(self.trainer):
                    held = self.sharing.hold(parts.name, split, lambda: _materialise(parts, split), self.trainer)
                    parts.opened[split] = self._place(held, split)
                    self.sharing.placed(parts.name, split, self.trainer)
                    continue
                opened = parts.fmt.open(split)
                if isinstance(opened, Stream) and len(self.datasets) > 1:
                    raise DataError(f"dataset '{parts.name}' streams its own batches ({type(opened).__name__}); a run "
                                    "of several datasets interleaves map-style datasets only: convert it (core-data "
                                    "convert --to hdf5) or train on it alone")
                if isinstance(opened, (Stream, DiskSplit)):
                    parts.opened[split] = opened
                    continue
                parts.opened[split] = self._place(parts.storage.materialise(opened, parts.prepare), split)
            learn(parts, self.run_dir, write=self._rank()[0] == 0)
            if "train" in parts.opened and parts.sampler.needs:
                try:
                    parts.sampler.bind(_columns(parts.opened["train"], parts.sampler.needs))
                except DataError as exc:
                    raise DataError(f"dataset '{parts.name}': {exc}") from None

    def teardown(self, stage: str) -> None:
        if self.sharing is not None:  # the segments go; the tensors mapped from them stay valid
            self.sharing.close()
        for parts in self.datasets:
            parts.fmt.close()

    def _place(self, held: dict[str, torch.Tensor], split: str) -> dict[str, torch.Tensor]:
        """A held split where it is used: with ``data.shard`` only this rank's share of the
        training split; with placement ``device`` on the accelerator."""
        if split == "train" and self.shard:
            share = shard_indices(len(held["stim"]), *self._rank(), self.seed)
            held = {k: v.index_select(0, share) for k, v in held.items()}
        target = self._data_device()
        return {k: v.to(target) for k, v in held.items()} if target is not None else held

    def _data_device(self) -> torch.device | None:
        """Where stored tensors live with placement ``device`` (None: host RAM)."""
        if self.placement != "device" or self.trainer is None:
            return None
        return self.trainer.strategy.root_device

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _order(self, opened: dict[str, torch.Tensor] | DiskSplit, sampler: Sampler, train: bool,
               position: EpochPosition | None, sharded: bool = False) -> IndexBatches:
        n = len(opened) if isinstance(opened, DiskSplit) else len(opened["stim"])
        on_device = self._data_device() if isinstance(opened, dict) else None
        # training drops the last partial batch (as FFCV and most loops do), unless it is the only one
        drop_last = train and n > self.batch_size
        rank = (lambda: (0, 1)) if sharded else self._rank  # a sharded split is this rank's already
        return IndexBatches(sampler, n, self.batch_size, drop_last, self.seed, self._epoch, rank, on_device,
                            position, self._step)

    def _step(self) -> int:
        return self.trainer.global_step if self.trainer is not None else 0

    def _done(self) -> int:
        """Training batches of the current epoch that have run (what a checkpoint taken now contains)."""
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.processed if self.trainer is not None else 0

    def _loader(self, split: str, train: bool | None = None) -> Iterable[Batch]:
        """The split's batches: shuffled and without the last partial batch when ``train``
        (the train split while fitting), else in order and complete."""
        train = split == "train" if train is None else train
        first = self.datasets[0].opened[split]
        if isinstance(first, Stream):
            rank, world_size = self._rank()
            return first.batches(batch_size=self.batch_size, train=train, seed=self.seed, epoch=self._epoch,
                                 rank=rank, world_size=world_size, num_workers=self.num_workers)
        gatherers = [_gatherer(parts.opened[split]) for parts in self.datasets]
        # overfit_batches: the same first batches every epoch, in order
        shuffled = train and not (self.trainer is not None and self.trainer.overfit_batches)
        position = self.position if train else None
        single = len(self.datasets) == 1
        orders = [self._order(parts.opened[split], parts.sampler if shuffled else self.eval_sampler, train,
                              position if single else None, split == "train" and self.shard) for parts in self.datasets]
        if single:
            dataset, sampler = gatherers[0], orders[0]
        else:
            dataset = Grouped(gatherers, [parts.name for parts in self.datasets])
            sampler = GroupedBatches(orders, self.interleave if train else "round_robin", self.seed, self._epoch,
                                     position, self._step)
        # its own generator: starting an epoch draws nothing from the global one (which the
        # augmentations use, and checkpoints restore)
        loader = DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=self.num_workers,
                            persistent_workers=self.num_workers > 0, generator=torch.Generator().manual_seed(self.seed))
        accelerator = self.trainer.strategy.root_device if self.trainer is not None else None
        if accelerator is not None and accelerator.type == "cuda" and self._data_device() is None:
            return DevicePrefetch(Batches(loader, position, self._done), accelerator)  # copied while the step before runs
        return Batches(loader, position, self._done)

    def train_dataloader(self) -> Iterable[Batch]:
        return self._loader("train")

    def val_dataloader(self) -> Iterable[Batch]:
        return self._loader("val")

    def test_dataloader(self) -> Iterable[Batch]:
        return self._loader("test")

    def predict_dataloader(self) -> Iterable[Batch]:
        return self._loader(self.predict_split, train=False)

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        batch = ready_on_current_stream(batch)
        training = self.trainer is not None and self.trainer.training
        parts = self.by_name[batch["dataset"]] if "dataset" in batch else self.datasets[0]
        batch = parts.storage.finish(batch, self.compute_dtype())
        for step in parts.device:
            if training or not step.transform.train_only:
                batch = step.transform(batch)
        return batch if "dataset" in batch else {**batch, "dataset": parts.name}

    def compute_dtype(self) -> torch.dtype:
        """The model's input dtype under the trainer's precision (bf16 under ``bf16-mixed``)."""
        precision = str(self.trainer.precision) if self.trainer is not None else "32-true"
        if precision.startswith("bf16"):
            return torch.bfloat16
        if precision.startswith("16"):
            return torch.float16
        return torch.float64 if precision.startswith("64") else torch.float32


def _materialise(parts: DatasetParts, split: str) -> dict[str, torch.Tensor]:
    """``split`` of a dataset held in RAM, opened and materialised (into shared memory, under :func:`core.materialise.allocating`)."""
    opened = parts.fmt.open(split)
    if not isinstance(opened, Split):
        raise DataError(f"dataset '{parts.name}': its format gave {type(opened).__name__} for split '{split}', though it "
                        "does not set streams; a format that streams must say so (streams = True)")
    return parts.storage.materialise(opened, parts.prepare)


def _gatherer(opened: dict[str, torch.Tensor] | DiskSplit) -> Dataset:
    return DiskBatches(opened) if isinstance(opened, DiskSplit) else TensorBatches(opened)


def _columns(opened: dict[str, torch.Tensor] | DiskSplit | Stream, names: Iterable[str]) -> dict[str, np.ndarray]:
    """Whole per-sample fields of a split (what a weighting sampler needs), without ``stim``."""
    if isinstance(opened, Stream):
        raise DataError("a sampler that weights samples by their fields cannot order a streamed split")
    if isinstance(opened, DiskSplit):
        return {name: opened.column(name) for name in names}
    return {name: opened[name].cpu().numpy() for name in names}
