"""Data-path throughput: the project's uint8 in-RAM loader against a per-sample DataLoader.

Both sides get the same data (N x 3 x 32 x 32 random uint8 images, int64 labels; default
N = 50,000), batch size 512, the same ``torch.set_num_threads`` and must deliver what a
model consumes: float32 batches (512, 3, 32, 32), normalised, randomly flipped left-right
and translated by up to 2 pixels (zero fill). Shapes and dtypes are asserted equal.

  ours  The real project path. A ``CoreDataModule`` (core/data.py) with ``Uint8Storage``,
        device-stage steps [PixelNorm(), RandomFlip(), RandomTranslate(pixels=2)],
        ``RandomOrder`` for training and ``InOrder`` for evaluation; ``setup("fit")`` on a tiny
        format whose ``open(split)`` returns a ``core.Split``. Batches come from
        ``train_dataloader()`` and are finished by ``dm.on_after_batch_transfer(batch, 0)`` on
        the CPU (there is no accelerator: this is where a GPU would do the work, so the CPU
        figure is a lower bound). ``LightningDataModule.trainer`` is a plain attribute
        (``None`` until a Trainer attaches), so a stub with ``training=True``,
        ``precision="32-true"``, ``current_epoch``, ``global_rank=0``, ``world_size=1`` is
        assigned to ``dm.trainer``: ``on_after_batch_transfer`` then runs the train-only
        augmentations exactly as under ``trainer.fit``, and the sampler re-draws per epoch.
        Its DataLoader uses ``--our-workers`` (default 0: the batch is one tensor gather).
  peer  What torchvision's CIFAR10 + RandomCrop(32, padding=2) + RandomHorizontalFlip +
        ToTensor + Normalize do per sample, rewritten with PIL and NumPy (torchvision is not
        imported): ``Image.fromarray(HWC uint8)`` -> ``ImageOps.expand`` (zero border) -> random
        ``crop`` -> random ``FLIP_LEFT_RIGHT`` -> CHW float / 255 -> ``(x - mean) / std`` with
        mean 127/255 and std 1 per channel (the values of ``PixelNorm(127, 255)``);
        ``DataLoader(batch_size=512, shuffle=True, drop_last=True, num_workers=--workers,
        persistent_workers=True)``.

Both drop an epoch's last partial batch (ours: ``train_dataloader``'s ``drop_last``); the
check still allows a smaller last batch, so an older ``core/data.py`` that kept it also runs.

A third row times ours without ``on_after_batch_transfer`` (uint8 batches out): the host's
share of the work when a GPU runs the device stage. It is not compared for shape or dtype.

Time to first batch is measured from creating the loader's iterator (ours: ``setup`` is
timed separately). Steady state skips the first 2 batches and then times ``--samples``
samples (epochs are chained when one epoch is not enough). ``--threads`` defaults to the
core count (DataLoader workers still run one torch thread each); on a 2-core machine that
other jobs keep busy, two intra-op threads can make each batch op several times slower, so
compare with ``--threads 1``. Run from the repository root:

    .venv/bin/python benchmarks/loader_throughput.py [--workers 2] [--our-workers 0] [--threads 2] [--samples 50000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import InOrder, Split, Step  # noqa: E402
from core.data import CoreDataModule  # noqa: E402
from plugins.augment.transforms import RandomFlip, RandomTranslate  # noqa: E402
from plugins.pixelnorm.transform import PixelNorm  # noqa: E402
from plugins.samplers.order import RandomOrder  # noqa: E402
from plugins.uint8_pixelnorm.storage import Uint8Storage  # noqa: E402

BATCH, PAD, WARMUP = 512, 2, 2
MEAN, STD = 127.0 / 255.0, 1.0  # the same normalisation as PixelNorm(127, 255), per channel


class ArrayFormat:
    """A format holding arrays in RAM: ``train`` has the data, ``val`` is empty."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def open(self, split: str) -> Split:
        if split == "train":
            return Split({"stim": self.images, "digit": self.labels})
        return Split({"stim": self.images[:0], "digit": self.labels[:0]})


class PerSampleCifar(Dataset):
    """torchvision's CIFAR10 + RandomCrop + RandomHorizontalFlip + ToTensor + Normalize, with PIL."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray) -> None:
        self.data, self.targets = images_hwc, labels
        self.mean = torch.full((3, 1, 1), MEAN)
        self.std = torch.full((3, 1, 1), STD)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = Image.fromarray(self.data[i])
        img = ImageOps.expand(img, border=PAD, fill=0)
        top, left = (int(v) for v in torch.randint(0, 2 * PAD + 1, (2,)))
        img = img.crop((left, top, left + 32, top + 32))
        if torch.rand(1).item() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.array(img, np.uint8, copy=True)).permute(2, 0, 1).contiguous().float().div(255)
        return x.sub_(self.mean).div_(self.std), int(self.targets[i])


def run(batches, finish, samples: int) -> dict:
    """Time to first batch; then skip WARMUP batches and time ``samples`` samples."""
    start = time.perf_counter()
    it = batches()
    first = finish(next(it))
    ttfb = time.perf_counter() - start
    shape = (tuple(first[0].shape), first[0].dtype, first[1].dtype)
    for _ in range(WARMUP - 1):
        finish(next(it))
    done, t0 = 0, time.perf_counter()
    while done < samples:
        try:
            stim, _ = finish(next(it))
        except StopIteration:
            it = batches()
            continue
        assert (tuple(stim.shape[1:]), stim.dtype) == (shape[0][1:], shape[1]) and len(stim) <= BATCH, stim.shape
        done += len(stim)
    elapsed = time.perf_counter() - t0
    return {"ttfb": ttfb, "rate": done / elapsed, "samples": done, "seconds": elapsed, "shape": shape}


def ours(images: np.ndarray, labels: np.ndarray, workers: int, samples: int, device_stage: bool = True) -> dict:
    named = [("pixelnorm", PixelNorm()), ("random_flip", RandomFlip()), ("random_translate", RandomTranslate(pixels=PAD))]
    steps = [Step(f"transforms[{i}]", name, t) for i, (name, t) in enumerate(named)]
    storage = Uint8Storage()
    prepare, device = storage.plan(steps, "bench")
    dm = CoreDataModule.single(ArrayFormat(images, labels), storage, prepare, device, RandomOrder(), InOrder(),
                        batch_size=BATCH, num_workers=workers, seed=0)
    dm.trainer = SimpleNamespace(training=True, precision="32-true", current_epoch=0, global_rank=0, world_size=1)
    t0 = time.perf_counter()
    dm.setup("fit")
    setup_s = time.perf_counter() - t0
    loader = dm.train_dataloader()

    def batches():
        dm.trainer.current_epoch += 1
        return iter(loader)

    def finish(batch):
        batch = dm.on_after_batch_transfer(batch, 0) if device_stage else batch
        return batch["stim"], batch["digit"]

    return {**run(batches, finish, samples), "setup": setup_s}


def peer(images_hwc: np.ndarray, labels: np.ndarray, workers: int, samples: int) -> dict:
    loader = DataLoader(PerSampleCifar(images_hwc, labels), batch_size=BATCH, shuffle=True, drop_last=True,
                        num_workers=workers, persistent_workers=workers > 0)
    return {**run(lambda: iter(loader), lambda b: b, samples), "setup": 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="images in the data set")
    parser.add_argument("--samples", type=int, default=50_000, help="samples timed after warm-up")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the peer")
    parser.add_argument("--our-workers", type=int, default=0, help="DataLoader workers of ours")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch.set_num_threads, both")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, args.n).astype(np.int64)
    images_hwc = np.ascontiguousarray(images.transpose(0, 2, 3, 1))  # CIFAR10's own layout

    a = ours(images, labels, args.our_workers, args.samples)
    host = ours(images, labels, args.our_workers, args.samples, device_stage=False)
    b = peer(images_hwc, labels, args.workers, args.samples)
    assert a["shape"] == b["shape"] == ((BATCH, 3, 32, 32), torch.float32, torch.int64), (a["shape"], b["shape"])

    print(f"loader throughput: {args.n} x 3x32x32 uint8, batch {BATCH}, torch threads {args.threads}, "
          f"{os.cpu_count()} cores, torch {torch.__version__}")
    print(f"batches: {a['shape'][0]} {a['shape'][1]}, labels {a['shape'][2]}; {WARMUP} warm-up batches skipped")
    print(f"  {'loader':<34} {'workers':>7} {'first batch s':>13} {'timed':>7} {'seconds':>8} {'samples/s':>10}")
    for name, r, w in ((f"ours (CoreDataModule, setup {a['setup']:.3f} s)", a, args.our_workers),
                       ("peer (per-sample PIL Dataset)", b, args.workers),
                       ("ours, host side only (uint8 out)", host, args.our_workers)):
        print(f"  {name:<34} {w:>7} {r['ttfb']:>13.3f} {r['samples']:>7} {r['seconds']:>8.2f} {r['rate']:>10.0f}")
    print(f"  ours / peer: {a['rate'] / b['rate']:.1f}x samples/s (target >= 20x); "
          f"host side only / peer: {host['rate'] / b['rate']:.1f}x")


if __name__ == "__main__":
    main()
