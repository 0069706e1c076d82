"""FFCV through the plugin vs FFCV direct vs the in-RAM uint8 path vs a per-sample DataLoader.

One data set for all: N x 3 x 32 x 32 random uint8 images with int labels (default N =
50,000, seed 0), batch 512, drop_last. The .betons are written once, into a temporary
folder, by the project's writer (``FFCVTool().write`` from a tiny in-memory ``DataFormat``:
train holds all N images, val and test the first 1,024; field ``stim`` and IntField ``label``
plus the sidecar). Each loader then runs in a fresh (spawned) process, so each FFCV loader
pays its own numba compilation and none inherits another's:

  plugin  ``CoreDataModule(FFCVFormat(folder), Uint8Storage, ...)``: setup("fit"),
          ``train_dataloader()`` (FFCVStream -> FFCV's Loader with our ShardedOrder).
  direct  ``ffcv.loader.Loader`` on the same train.beton with the plugin's pipelines
          (SimpleRGBImageDecoder, ToTensor, ToTorchImage(channels_last=False); IntDecoder,
          ToTensor, Squeeze), order RANDOM, os_cache, batches_ahead 3, drop_last.
  in-RAM  ``CoreDataModule`` with ``Uint8Storage`` and ``RandomOrder`` on arrays in RAM, 0
          workers (as benchmarks/loader_throughput.py).
  peer    ``DataLoader`` over loader_throughput's ``PerSampleCifar`` (PIL per sample), which
          already normalises, flips and translates per sample (so no finishing on top).

plugin, direct and in-RAM batches get the same finishing on the CPU, by the project's objects
(``dm.on_after_batch_transfer``): ``Uint8Storage.finish`` (uint8 -> float32), ``PixelNorm()``,
``RandomFlip()``, ``RandomTranslate(pixels=2)``. ``--threads`` sets torch.set_num_threads in
every process, FFCV's num_workers and the peer's workers. first batch s: from constructing
the loader (format, setup, Loader; FFCV's compilation included) to the first finished batch.
steady samples/s: epoch ``--epochs`` of ``--epochs`` (only it is timed; wait s = waiting on
the loader, finish s = finishing). uint8-out: one more epoch, unfinished. ``--repeats R``
measures the four R times, interleaved, and keeps each loader's best figures (the machine is
shared: one busy core stalls every 2-thread op). From the repository root:

    .venv/bin/python benchmarks/ffcv_throughput.py [--threads 2] [--n 50000] [--peer-n N] [--epochs 3] [--repeats 1]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loader_throughput import BATCH, PAD, PerSampleCifar  # noqa: E402

from core import DataFormat, DatasetMeta, InOrder, Split, Step  # noqa: E402
from core.data import CoreDataModule  # noqa: E402
from plugins.augment.transforms import RandomFlip, RandomTranslate  # noqa: E402
from plugins.pixelnorm.transform import PixelNorm  # noqa: E402
from plugins.samplers.order import RandomOrder  # noqa: E402
from plugins.uint8_pixelnorm.storage import Uint8Storage  # noqa: E402

EVAL_N = 1024
LOADERS = ("plugin", "direct", "in-RAM", "peer")


def arrays(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64)


class Arrays(DataFormat):
    """train: all images; val and test: the first EVAL_N."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def meta(self) -> DatasetMeta:
        sizes = {s: len(self.open(s)) for s in ("train", "val", "test")}
        return DatasetMeta("bench", (3, 32, 32), {"label": 10}, sizes)

    def open(self, split: str) -> Split:
        k = len(self.images) if split == "train" else min(EVAL_N, len(self.images))
        return Split({"stim": self.images[:k], "label": self.labels[:k]})


def module(fmt: DataFormat | None, workers: int) -> CoreDataModule:
    """A CoreDataModule with the uint8 storage and the device stage, under a training-trainer stub."""
    named = {"pixelnorm": PixelNorm(), "random_flip": RandomFlip(), "random_translate": RandomTranslate(pixels=PAD)}
    storage = Uint8Storage()
    prepare, device = storage.plan([Step(f"transforms[{i}]", n, t) for i, (n, t) in enumerate(named.items())], "bench")
    dm = CoreDataModule.single(fmt, storage, prepare, device, RandomOrder(), InOrder(), batch_size=BATCH, num_workers=workers,
                        seed=0)
    dm.trainer = SimpleNamespace(training=True, precision="32-true", current_epoch=0, global_rank=0, world_size=1)
    return dm


def measure(kind: str, folder: str, n: int, threads: int, epochs: int, out: mp.Queue) -> None:
    torch.set_num_threads(threads)
    finisher = module(None, 0)  # its on_after_batch_transfer is the project's finishing
    finish = lambda b: finisher.on_after_batch_transfer(b, 0)  # noqa: E731
    if kind in ("in-RAM", "peer"):
        images, labels = arrays(n)
        images_hwc = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
    if kind in ("plugin", "direct"):  # imports (ffcv, numba: seconds) are not the loader's time
        from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder
        from ffcv.loader import Loader, OrderOption
        from ffcv.transforms import Squeeze, ToTensor, ToTorchImage
        from plugins.ffcv.format import FFCVFormat
    t0 = time.perf_counter()
    if kind in ("plugin", "in-RAM"):
        plugin = kind == "plugin"
        dm = module(FFCVFormat(folder) if plugin else Arrays(images, labels), threads if plugin else 0)
        dm.setup("fit")
        loader, finish = dm.train_dataloader(), (lambda b: dm.on_after_batch_transfer(b, 0))

        def start(e):
            dm.trainer.current_epoch = e
            return iter(loader)
    elif kind == "direct":
        pipelines = {"stim": [SimpleRGBImageDecoder(), ToTensor(), ToTorchImage(channels_last=False)],
                     "label": [IntDecoder(), ToTensor(), Squeeze(1)]}
        ffcv = Loader(str(Path(folder) / "train.beton"), batch_size=BATCH, num_workers=threads, os_cache=True,
                      order=OrderOption.RANDOM, seed=0, pipelines=pipelines, drop_last=True, batches_ahead=3)
        start = lambda e: ({"stim": x, "label": y.long()} for x, y in ffcv)  # noqa: E731
    else:
        peer = torch.utils.data.DataLoader(PerSampleCifar(images_hwc, labels), batch_size=BATCH, shuffle=True,
                                           drop_last=True, num_workers=threads, persistent_workers=True,
                                           multiprocessing_context="fork")  # Linux's default; spawn would re-import
        finish, start = (lambda b: {"stim": b[0], "label": b[1]}), (lambda e: iter(peer))
    result = {"n": n}
    for e in range(epochs + (kind != "peer")):  # the extra epoch: uint8 out, no finishing
        raw = e == epochs
        it, te, wait, fin, done = start(e), time.perf_counter(), 0.0, 0.0, 0
        while True:
            a = time.perf_counter()
            batch = next(it, None)
            if batch is None:
                break
            b = time.perf_counter()
            batch = batch if raw else finish(batch)
            fin, wait = fin + time.perf_counter() - b, wait + b - a
            if "ttfb" not in result:
                result["ttfb"] = time.perf_counter() - t0
                result["shape"] = (tuple(batch["stim"].shape), str(batch["stim"].dtype), str(batch["label"].dtype))
            done += len(batch["stim"])
        seconds = time.perf_counter() - te
        if e >= epochs - 1:  # the timed epoch, then the unfinished one
            result.update({"raw": done / seconds} if raw else dict(rate=done / seconds, samples=done, seconds=seconds,
                                                                   wait=wait, fin=fin))
    out.put(result)


def in_process(*args) -> dict:
    """``measure(*args)`` in a fresh (spawned) process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=measure, args=(*args, queue))
    proc.start()
    while True:
        try:
            result = queue.get(timeout=5)
            break
        except Exception:  # queue.Empty: still running, unless the child died
            if proc.exitcode is not None:
                raise RuntimeError(f"the {args[0]} measurement exited with {proc.exitcode}") from None
    proc.join()
    return result


def best(runs: list[dict]) -> dict:
    """The least disturbed figures of repeated runs: highest rates, lowest first batch."""
    out = dict(max(runs, key=lambda x: x["rate"]))
    out["ttfb"] = min(x["ttfb"] for x in runs)
    if "raw" in out:
        out["raw"] = max(x["raw"] for x in runs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="images in the data set")
    parser.add_argument("--peer-n", type=int, default=None, help="images for the peer (default --n)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads = FFCV num_workers = peer workers")
    parser.add_argument("--epochs", type=int, default=3, help="epochs run; only the last is timed")
    parser.add_argument("--repeats", type=int, default=1, help="measure each loader this often; keep the best")
    args = parser.parse_args()
    from plugins.ffcv.tool import FFCVTool

    with tempfile.TemporaryDirectory(prefix="ffcv_bench_") as folder:
        t0 = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):  # FFCV's writer's progress bars
            FFCVTool().write(Arrays(*arrays(args.n)), Path(folder), num_workers=args.threads)
        write_s, size = time.perf_counter() - t0, (Path(folder) / "train.beton").stat().st_size
        runs: dict[str, list[dict]] = {k: [] for k in LOADERS}
        for _ in range(args.repeats):  # interleaved, so a burst of outside load hits one repeat of each
            for k in LOADERS:
                runs[k].append(in_process(k, folder, (args.peer_n or args.n) if k == "peer" else args.n, args.threads,
                                          args.epochs))
    r = {k: best(v) for k, v in runs.items()}
    want = ((BATCH, 3, 32, 32), "torch.float32", "torch.int64")
    assert all(x["shape"] == want for x in r.values()), {k: x["shape"] for k, x in r.items()}

    print(f"ffcv throughput: {args.n} x 3x32x32 uint8 (peer {r['peer']['n']}), batch {BATCH}, threads {args.threads}, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, torch {torch.__version__}")
    print(f"train.beton {size / 2**20:.1f} MiB written by FFCVTool in {write_s:.1f} s; batches {want}; "
          f"epoch {args.epochs} of {args.epochs} timed; best of {args.repeats} (interleaved)")
    if args.repeats > 1:
        print("  steady samples/s per repeat: " + "; ".join(f"{k} " + " ".join(f"{x['rate']:.0f}" for x in v)
                                                         for k, v in runs.items()))
    print(f"  {'loader':<8} {'n':>6} {'first batch s':>13} {'timed':>6} {'seconds':>8} {'wait s':>7} {'finish s':>8} "
          f"{'samples/s':>10} {'uint8-out samples/s':>19}")
    for k, x in r.items():
        raw = f"{x['raw']:>19.0f}" if "raw" in x else f"{'-':>19}"
        print(f"  {k:<8} {x['n']:>6} {x['ttfb']:>13.3f} {x['samples']:>6} {x['seconds']:>8.2f} {x['wait']:>7.2f} "
              f"{x['fin']:>8.2f} {x['rate']:>10.0f} {raw}")
    p, d, m, q = (r[k] for k in LOADERS)
    verdict = {True: "met", False: "MISSED"}.__getitem__
    steady = p["rate"] / d["rate"]
    print(f"  plugin / direct: steady {steady:.3f}x ({verdict(abs(steady - 1) <= 0.05)}: within 5%), "
          f"first batch {p['ttfb'] / d['ttfb']:.3f}x the time, uint8-out {p['raw'] / d['raw']:.3f}x")
    print(f"  in-RAM / direct: steady {m['rate'] / d['rate']:.2f}x ({verdict(m['rate'] >= 1.5 * d['rate'])}: >=1.5x), "
          f"first batch {d['ttfb'] / m['ttfb']:.1f}x faster ({verdict(d['ttfb'] >= 10 * m['ttfb'])}: >= 10x), "
          f"uint8-out {m['raw'] / d['raw']:.2f}x")
    for k in LOADERS[:3]:
        x = r[k]
        print(f"  {k} / peer: steady {x['rate'] / q['rate']:.2f}x, first batch {x['ttfb'] / q['ttfb']:.2f}x the time")


if __name__ == "__main__":
    main()
