import numpy as np
import torch

from core import InOrder, Split, Step
from core.data import CoreDataModule, IndexBatches, TensorBatches
from plugins.cast.storage import Float32Storage
from plugins.pixelnorm.transform import PixelNorm
from plugins.samplers.order import RandomOrder


class TinyFormat:
    def __init__(self, n=10):
        self.stim = np.arange(n * 4, dtype=np.uint8).reshape(n, 1, 2, 2)

    def open(self, split):
        return Split({"stim": self.stim, "digit": np.arange(len(self.stim)) % 3})


def test_batches_are_gathered_whole_and_cover_the_epoch():
    data = TensorBatches({"stim": torch.arange(10)[:, None], "digit": torch.arange(10)})
    order = IndexBatches(RandomOrder(), 10, 4, False, 0, lambda: 0, lambda: (0, 1))
    batches = [data[index] for index in order]
    assert [len(b["digit"]) for b in batches] == [4, 4, 2] and len(order) == 3
    assert sorted(torch.cat([b["digit"] for b in batches]).tolist()) == list(range(10))
    assert all(torch.equal(b["stim"][:, 0], b["digit"]) for b in batches)


def test_drop_last_and_rank_shards():
    order = IndexBatches(InOrder(), 10, 4, True, 0, lambda: 0, lambda: (1, 2))
    batches = list(order)
    assert len(order) == len(batches) == 1
    assert batches[0].tolist() == [1, 3, 5, 7]


def test_datamodule_prepares_then_finishes_on_the_device():
    steps_device = [Step("data.transforms.0", "pixelnorm", PixelNorm())]
    dm = CoreDataModule.single(TinyFormat(), Float32Storage(), [], steps_device, RandomOrder(), InOrder(), 4, 0, 0)
    dm.setup("fit")
    assert set(dm.splits) == {"train", "val"}
    assert dm.splits["train"]["stim"].dtype == torch.float32
    held = sum(t.numel() * t.element_size() for split in dm.splits.values() for t in split.values())
    assert held == 2 * (10 * 4 * 4 + 10 * 8)
    batch = next(iter(dm.train_dataloader()))
    finished = dm.on_after_batch_transfer(batch, 0)  # no trainer: float32
    torch.testing.assert_close(finished["stim"], (batch["stim"] - 127) / 255)
    assert len(list(dm.val_dataloader())) == 3
