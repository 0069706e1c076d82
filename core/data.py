"""The generic LightningDataModule: format -> storage -> sampler -> batched gather -> device.

Samples are held as tensors in RAM (in the storage backend's dtype). A batch is gathered
with one tensor index per field (no per-sample Python), pinned when a GPU is used, moved
to the device by Lightning, and finished there in ``on_after_batch_transfer``: the storage
backend's ``finish`` and then the device-stage transforms.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
import lightning
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data import Sampler as TorchSampler

from core.kinds import Batch, DataFormat, DiskSplit, Sampler, Step, StorageBackend, Stream


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
    ) -> None:
        self.sampler, self.n, self.batch_size, self.drop_last = sampler, n, batch_size, drop_last
        self.seed, self.epoch, self.rank, self.device = seed, epoch, rank, device

    def _order(self) -> np.ndarray:
        rank, world_size = self.rank()
        return np.asarray(self.sampler.indices(self.n, epoch=self.epoch(), seed=self.seed, rank=rank, world_size=world_size))

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = torch.from_numpy(self._order().astype(np.int64))
        if self.device is not None:
            order = order.to(self.device)
        stop = len(order) - (len(order) % self.batch_size if self.drop_last else 0)
        yield from torch.split(order[:stop], self.batch_size)

    def __len__(self) -> int:
        rank, world_size = self.rank()
        per_rank = -(-self.n // world_size)
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)


class CoreDataModule(lightning.LightningDataModule):
    def __init__(
        self,
        fmt: DataFormat,
        storage: StorageBackend,
        prepare: list[Step],
        device: list[Step],
        sampler: Sampler,
        eval_sampler: Sampler,
        batch_size: int,
        num_workers: int,
        seed: int,
        placement: str = "host",
    ) -> None:
        super().__init__()
        self.fmt, self.storage, self.prepare, self.device = fmt, storage, prepare, device
        self.sampler, self.eval_sampler = sampler, eval_sampler
        self.batch_size, self.num_workers, self.seed, self.placement = batch_size, num_workers, seed, placement
        self.splits: dict[str, dict[str, torch.Tensor]] = {}
        self.streams: dict[str, Stream] = {}
        self.on_disk: dict[str, DiskSplit] = {}

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(stage or "", ("train", "val", "test"))
        for split in wanted:
            if split not in self.splits and split not in self.streams and split not in self.on_disk:
                opened = self.fmt.open(split)
                if isinstance(opened, Stream):
                    self.streams[split] = opened
                    continue
                if isinstance(opened, DiskSplit):
                    self.on_disk[split] = opened
                    continue
                held = self.storage.materialise(opened, self.prepare)
                target = self._data_device()
                self.splits[split] = {k: v.to(target) for k, v in held.items()} if target is not None else held

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

    def _loader(self, split: str, sampler: Sampler, drop_last: bool) -> Iterable[Batch]:
        if split in self.streams:
            rank, world_size = self._rank()
            return self.streams[split].batches(
                batch_size=self.batch_size, train=split == "train", seed=self.seed, epoch=self._epoch,
                rank=rank, world_size=world_size, num_workers=self.num_workers,
            )
        batches = DiskBatches(self.on_disk[split]) if split in self.on_disk else TensorBatches(self.splits[split])
        on_device = self._data_device() if split in self.splits else None
        order = IndexBatches(sampler, len(batches), self.batch_size, drop_last, self.seed, self._epoch, self._rank, on_device)
        return DataLoader(
            batches,
            sampler=order,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available() and on_device is None,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> Iterable[Batch]:
        # drop the last partial batch (as FFCV and most training loops do), unless it is the only one
        if "train" in self.streams:
            return self._loader("train", self.sampler, drop_last=True)
        n = len(self.on_disk["train"]) if "train" in self.on_disk else len(self.splits["train"]["stim"])
        return self._loader("train", self.sampler, drop_last=n > self.batch_size)

    def val_dataloader(self) -> Iterable[Batch]:
        return self._loader("val", self.eval_sampler, False)

    def test_dataloader(self) -> Iterable[Batch]:
        return self._loader("test", self.eval_sampler, False)

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        training = self.trainer is not None and self.trainer.training
        batch = self.storage.finish(batch, self.compute_dtype())
        for step in self.device:
            if training or not step.transform.train_only:
                batch = step.transform(batch)
        return batch

    def compute_dtype(self) -> torch.dtype:
        """The model's input dtype under the trainer's precision (bf16 under ``bf16-mixed``)."""
        precision = str(self.trainer.precision) if self.trainer is not None else "32-true"
        if precision.startswith("bf16"):
            return torch.bfloat16
        if precision.startswith("16"):
            return torch.float16
        return torch.float64 if precision.startswith("64") else torch.float32
