"""The generic LightningDataModule: format -> storage -> sampler -> batched gather -> device.

Samples are held as tensors in RAM (in the storage backend's dtype). A batch is gathered
with one tensor index per field (no per-sample Python), pinned when a GPU is used, moved
to the device by Lightning, and finished there in ``on_after_batch_transfer``: the storage
backend's ``finish`` and then the device-stage transforms.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import lightning
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data import Sampler as TorchSampler

from core.kinds import Batch, DataFormat, Sampler, Step, StorageBackend


class TensorBatches(Dataset):
    """Indexed by a whole batch of indices: one gather per field."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, index: torch.Tensor) -> Batch:
        return {key: value[index] for key, value in self.tensors.items()}


class IndexBatches(TorchSampler):
    """Yields index tensors of ``batch_size`` from a core sampler, re-drawn every epoch."""

    def __init__(
        self,
        sampler: Sampler,
        n: int,
        batch_size: int,
        drop_last: bool,
        seed: int,
        epoch: Callable[[], int],
        rank: Callable[[], tuple[int, int]],
    ) -> None:
        self.sampler, self.n, self.batch_size, self.drop_last = sampler, n, batch_size, drop_last
        self.seed, self.epoch, self.rank = seed, epoch, rank

    def _order(self) -> np.ndarray:
        rank, world_size = self.rank()
        return np.asarray(self.sampler.indices(self.n, epoch=self.epoch(), seed=self.seed, rank=rank, world_size=world_size))

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = torch.from_numpy(self._order().astype(np.int64))
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
    ) -> None:
        super().__init__()
        self.fmt, self.storage, self.prepare, self.device = fmt, storage, prepare, device
        self.sampler, self.eval_sampler = sampler, eval_sampler
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.splits: dict[str, dict[str, torch.Tensor]] = {}

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(stage or "", ("train", "val", "test"))
        for split in wanted:
            if split not in self.splits:
                self.splits[split] = self.storage.materialise(self.fmt.open(split), self.prepare)

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _loader(self, split: str, sampler: Sampler, drop_last: bool) -> DataLoader:
        tensors = self.splits[split]
        batches = TensorBatches(tensors)
        order = IndexBatches(sampler, len(batches), self.batch_size, drop_last, self.seed, self._epoch, self._rank)
        return DataLoader(
            batches,
            sampler=order,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        # drop the last partial batch (as FFCV and most training loops do), unless it is the only one
        return self._loader("train", self.sampler, drop_last=len(self.splits["train"]) > self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_sampler, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_sampler, False)

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        batch = self.storage.finish(batch)
        for step in self.device:
            batch = step.transform(batch)
        return batch

    def bytes_held(self) -> int:
        return sum(t.numel() * t.element_size() for split in self.splits.values() for t in split.values())

