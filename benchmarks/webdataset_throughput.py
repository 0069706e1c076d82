"""The ``webdataset`` format's stream against a plain webdataset pipeline, on the same shards.

Writes, into a temporary folder, ``--samples`` synthetic samples (default 20,000: 64x64
uint8 ``stim``, 100 float32 ``responses``, a label of 10 classes; seed 0) with the
project's writer (``WebDatasetTool().write`` from a small in-memory ``DataFormat``, as
``core-data convert --to webdataset`` writes them; ``--shard-size`` 1,000 samples). Then
reads the training split, as training does (shard order and a 1,000-sample buffer
shuffled), with ``--workers`` DataLoader workers and batches of ``--batch-size``:

  ours   ``WebDatasetFormat(folder).open("train").batches(train=True, ...)``: our tar
         reader, cached .npy headers, per-sample checks, batches as tensors, tails merged;
  plain  ``DataLoader(wds.WebDataset(urls, shardshuffle=100).shuffle(1000).decode()
         .batched(batch_size), batch_size=None, num_workers=workers, persistent_workers=True)``
         (its workers start once; ours start each epoch, as in training, so the comparison
         favours plain): the library's own tar reader and decoder.

Each is timed over whole epochs (``--epochs``, after one untimed epoch that warms the page
cache), interleaved ``--repeats`` times; the best epoch of each is kept. Prints samples/s
of both and the ratio ours / plain. Run from any directory:

    .venv/bin/python benchmarks/webdataset_throughput.py [--samples 20000] [--workers 2] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import DataFormat, DatasetMeta, Split  # noqa: E402
from plugins.webdataset.format import WebDatasetFormat  # noqa: E402
from plugins.webdataset.tool import WebDatasetTool  # noqa: E402

SIZE, NEURONS, CLASSES = 64, 100, 10


class Synthetic(DataFormat):
    """``n`` training samples (val and test: 256 each) held in RAM."""

    def __init__(self, n: int) -> None:
        rng = np.random.default_rng(0)
        self.splits = {}
        for split, count in (("train", n), ("val", 256), ("test", 256)):
            self.splits[split] = Split({
                "stim": rng.integers(0, 256, size=(count, 1, SIZE, SIZE), dtype=np.uint8),
                "responses": rng.random((count, NEURONS), dtype=np.float32),
                "label": rng.integers(0, CLASSES, size=count),
            })

    def meta(self) -> DatasetMeta:
        return DatasetMeta("synthetic", (1, SIZE, SIZE), {"label": CLASSES}, {s: len(v) for s, v in self.splits.items()},
                           fields={"responses": ((NEURONS,), "float32")})

    def open(self, split: str) -> Split:
        return self.splits[split]


def ours(folder: Path, batch_size: int, workers: int):
    stream = WebDatasetFormat(str(folder)).open("train")
    epoch = [0]
    batches = stream.batches(batch_size=batch_size, train=True, seed=0, epoch=lambda: epoch[0], rank=0, world_size=1,
                             num_workers=workers)

    def run() -> int:
        epoch[0] += 1
        return sum(len(batch["stim"]) for batch in batches)

    return run


def plain(folder: Path, batch_size: int, workers: int):
    import webdataset as wds
    from torch.utils.data import DataLoader

    urls = sorted(str(p) for p in folder.glob("train-*.tar"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline = wds.WebDataset(urls, shardshuffle=100, seed=0).shuffle(1000).decode().batched(batch_size)
    loader = DataLoader(pipeline, batch_size=None, num_workers=workers, persistent_workers=workers > 0)

    def run() -> int:
        return sum(len(batch["cls"]) for batch in loader)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "shards"
        WebDatasetTool().write(Synthetic(args.samples), folder, shard_size=args.shard_size)
        size = sum(p.stat().st_size for p in folder.glob("train-*.tar"))
        print(f"{args.samples} samples (uint8 1x{SIZE}x{SIZE} stim, {NEURONS} float32 responses, label) in "
              f"{len(list(folder.glob('train-*.tar')))} shards, {size / 2**20:.0f} MiB; batch {args.batch_size}, "
              f"{args.workers} workers")
        runs = {"ours": ours(folder, args.batch_size, args.workers), "plain": plain(folder, args.batch_size, args.workers)}
        for run in runs.values():
            run()  # untimed: page cache, imports
        best = {name: 0.0 for name in runs}
        for _ in range(args.repeats):
            for name, run in runs.items():
                for _ in range(args.epochs):
                    start = time.perf_counter()
                    n = run()
                    best[name] = max(best[name], n / (time.perf_counter() - start))
        for name, rate in best.items():
            print(f"  {name:<6} {rate:>9,.0f} samples/s")
        print(f"ratio ours / plain: {best['ours'] / best['plain']:.2f}")


if __name__ == "__main__":
    main()
