"""Steady-state training time per epoch: core-train against a plain PyTorch floor, in one run.

Every row trains the same model on the same data for one untimed warm-up epoch and then
``--epochs`` timed epochs, and reports the median of the timed epochs in ms (of every
round's, with ``--repeats``: the rows run round after round, interleaved) and the best. Between rows
``lightning.seed_everything(0)`` is called and the model is rebuilt from scratch. The data
is N random uint8 images (N, 3, S, S) (S = ``--image-size``, default 32) drawn with a fixed
NumPy seed, and int64 labels in 10 classes. Every row does, per step, a batch of
``--batch-size`` samples drawn in a fresh random order each epoch (the last partial batch
dropped: N // B steps per epoch), cast to the compute dtype, pixelnorm ``(x - 127) / 255``,
a random left-right flip (p = 0.5) and a random translation by up to 2 pixels with zero
fill, then ``simple_cnn`` (``plugins.simple_cnn.model.SimpleCNN``, built from a
``core.DatasetMeta`` with one head ``label`` of 10 classes), ``cross_entropy`` on the
float32 logits, ``AdamW(lr=0.003, weight_decay=0)`` (the values of ``optim: {optimizer:
adamw, lr: 0.003}``) with ``zero_grad(set_to_none=True)``. With ``--precision bf16-mixed``
the batch is cast to bfloat16 and forward and loss run under ``torch.autocast(device_type,
torch.bfloat16)``. Each timed epoch starts and ends with ``torch.cuda.synchronize()`` on CUDA.

Rows (``--rows`` selects them by the name in brackets):

  floor (``floor``)
      A plain PyTorch loop, no Lightning. The images live on the device as one uint8
      tensor, the labels as int64. Per epoch ``torch.randperm(N, device=...)``; per step
      the batch's indices are a slice of it, and images and labels are gathered with
      ``index_select`` on the device, cast, normalised, flipped with ``torch.where`` on a
      per-sample ``rand < 0.5`` and translated with one ``gather`` (the algorithm of
      ``plugins/augment/transforms.py``'s ``RandomTranslate``, reimplemented here); then the
      forward, loss, backward and optimizer step. No host sync inside an epoch.
  core-train host (``core-train-host``)
      The real core-train path, as ``core-train --config`` runs it, in-process: a config
      dict checked by ``core.config.parse_config``, ``core.registry.Registry.load()`` with
      one extra plugin object added (``registry.add``) whose ``core_data_formats()`` gives a
      format ``synthetic_cifar`` serving the arrays above (train: N samples; val and test:
      64 each), ``core.resolve.resolve``, then ``core.run.build_trainer`` (with an extra
      callback that times each epoch from ``on_train_epoch_start`` to
      ``on_train_epoch_end``) and ``trainer.fit``. The config: ``data: {format:
      synthetic_cifar, storage: uint8, transforms: [pixelnorm, random_flip,
      {random_translate: {pixels: 2}}], sampler: random, batch_size: B, placement: host}``,
      ``model: {simple_cnn: {conv1, conv2, fc_hidden}}``, ``optim: {optimizer: adamw, lr:
      0.003}``, ``trainer: {max_epochs: E + 1, accelerator: gpu|cpu, devices: 1, precision,
      enable_progress_bar: false, enable_model_summary: false, limit_val_batches: 0,
      num_sanity_val_steps: 0}``. No validation runs (it would fall inside the timed epoch);
      the checkpoint callbacks write ``last.ckpt`` after each epoch's timer has stopped.
      Everything else of a real run is timed with it: the loss and accuracy logged per step,
      the sampler clock callback, the DataLoader over the in-RAM uint8 tensors, the copy to
      the device, the storage's ``finish`` and the device-stage transforms, and the
      ``epoch_summary`` callback's line at the epoch's end (its output is swallowed here).
  core-train device (``core-train-device``)
      The same with ``data.placement: device``: the uint8 tensors move to the accelerator
      once, batches are gathered there.
  core-train device + compile (``core-train-device-compile``, added by ``--compile``)
      The same with the top-level config section ``compile: {mode: default}``. If
      ``parse_config`` refuses the section, or the fit raises, the row says it is
      unavailable and why; if the fit ran but torch._dynamo compiled no graph, the row is
      marked ``(not compiled)``. On CPU it works but compiling takes a while.
  lightning bare (``lightning-bare``)
      ``lightning.Trainer`` (``logger=False``, no checkpointing, no progress bar, no model
      summary, same accelerator and precision) fitting a minimal LightningModule (the same
      model, loss and optimizer; nothing logged) on an iterable that is not a DataLoader and
      yields the floor's device batches (gather and augmentations as in the floor, done in
      the iterable). What Lightning itself costs per step.
  per-sample loader (``per-sample``)
      The usual torchvision recipe: a map-style Dataset returning one sample at a time
      (``RandomCrop(S, padding=2)``, ``RandomHorizontalFlip``, ``ToTensor``,
      ``Normalize(mean=127/255, std=1)``, i.e. the same pixelnorm; with PIL and NumPy
      when torchvision is not installed, as ``PerSampleCifar`` of
      ``benchmarks/loader_throughput.py``), a torch ``DataLoader`` (``shuffle=True,
      drop_last=True, num_workers=--workers, pin_memory`` on CUDA, ``persistent_workers``
      with workers), ``.to(device, non_blocking=True)``, then the floor's plain loop. The
      batch stays float32 (autocast casts inside the model under bf16-mixed).

Two model widths are measured by default, each a table: ``small`` (simple_cnn
conv1/conv2/fc_hidden = 32/64/128) and ``wide`` (128/256/512); ``--widths tiny`` (1/1/1) is
a trivially cheap model, for the framework's own overhead per step on the CPU. Each row's ``x floor`` is its ms/epoch over the
floor's. Below each table, ``core-train overhead per step (us)`` = (core-train best ms/epoch -
floor best ms/epoch) / (N // B) * 1000, for host and device placement (the best epochs:
on a shared machine noise only adds time). The last line is
``RESULT {json}`` with every figure (per-epoch times too).

Defaults: on CUDA N = 45,000, batch 512, bf16-mixed, 16 loader workers; on CPU N = 2,048,
batch 128, 32-true, 2 workers. Run from the repository root:

    .venv/bin/python benchmarks/gpu_step.py [--device cuda] [--compile]
    .venv/bin/python benchmarks/gpu_step.py --device cpu --n 2048 --batch-size 128 --image-size 16 --epochs 2
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import DataFormat, DatasetMeta, Split, hookimpl  # noqa: E402
from plugins.simple_cnn.model import SimpleCNN  # noqa: E402

LR, PAD, MEAN, SCALE, CLASSES, EVAL_SAMPLES = 0.003, 2, 127.0, 255.0, 10, 64
HEAD = "label"
WIDTHS = {"small": {"conv1": 32, "conv2": 64, "fc_hidden": 128}, "wide": {"conv1": 128, "conv2": 256, "fc_hidden": 512},
          # trivially cheap: what is left of a step is the framework's own per-step cost (--widths tiny, on the CPU)
          "tiny": {"conv1": 1, "conv2": 1, "fc_hidden": 1}}
ROWS = {  # --rows name: printed name
    "floor": "floor",
    "core-train-host": "core-train host",
    "core-train-device": "core-train device",
    "core-train-device-compile": "core-train device + compile",
    "lightning-bare": "lightning bare",
    "per-sample": "per-sample loader",
}
# Lightning's notes that do not apply to a benchmark (no validation, few batches, no workers)
QUIET = (".*does not have many workers.*", ".*could not find the monitored key.*",
         ".*smaller than the logging interval.*", r".*isinstance\(treespec, LeafSpec\).*")


# ------------------------------------------------------------------------------ data
@dataclass
class Data:
    images: np.ndarray  # (N, 3, S, S) uint8
    labels: np.ndarray  # (N,) int64
    eval_images: np.ndarray
    eval_labels: np.ndarray

    @property
    def meta(self) -> DatasetMeta:
        n, s = len(self.images), self.images.shape[-1]
        return DatasetMeta(name="synthetic_cifar", stim_shape=(3, s, s), heads={HEAD: CLASSES},
                           split_sizes={"train": n, "val": len(self.eval_images), "test": len(self.eval_images)})


def make_data(n: int, size: int, seed: int = 0) -> Data:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n + EVAL_SAMPLES, 3, size, size), dtype=np.uint8)
    labels = rng.integers(0, CLASSES, n + EVAL_SAMPLES).astype(np.int64)
    return Data(images[:n], labels[:n], images[n:], labels[n:])


class SyntheticCifar(DataFormat):
    """Format ``synthetic_cifar``: the benchmark's arrays; ``val`` and ``test`` share 64 samples."""

    def __init__(self, data: Data) -> None:
        self.data = data

    def meta(self) -> DatasetMeta:
        return self.data.meta

    def open(self, split: str) -> Split:
        d = self.data
        if split == "train":
            return Split({"stim": d.images, HEAD: d.labels})
        return Split({"stim": d.eval_images, HEAD: d.eval_labels})


def synthetic_plugin(data: Data) -> type:
    """A plugin object for ``Registry.add``: its ``core_data_formats()`` serves ``data``."""

    def synthetic_cifar() -> DataFormat:
        return SyntheticCifar(data)

    class SyntheticPlugin:
        @staticmethod
        @hookimpl
        def core_data_formats() -> dict[str, Any]:
            return {"synthetic_cifar": synthetic_cifar}

    return SyntheticPlugin


# ------------------------------------------------------------------------------ the floor's batch
def translate(stim: torch.Tensor, p: int) -> torch.Tensor:
    """Shift each sample by up to ``p`` pixels in x and y, zero fill: pad, then one gather
    (each output pixel (i, j) of sample b reads padded pixel (i + dy_b, j + dx_b))."""
    if p == 0:
        return stim
    b, c, h, w = stim.shape
    padded = F.pad(stim, (p, p, p, p))
    side = 2 * p + 1
    shift = torch.randint(0, side * side, (b,), device=stim.device)
    dy, dx = shift // side, shift % side
    rows = torch.arange(h, device=stim.device).view(1, h, 1) + dy.view(-1, 1, 1)
    cols = torch.arange(w, device=stim.device).view(1, 1, w) + dx.view(-1, 1, 1)
    where = (rows * (w + 2 * p) + cols).flatten(1)  # (B, H*W) into the (H+2p)*(W+2p) frame
    frames = padded.reshape(b, c, -1)
    return frames.gather(2, where.unsqueeze(1).expand(-1, c, -1)).view(b, c, h, w)


def device_batch(images: torch.Tensor, labels: torch.Tensor, index: torch.Tensor,
                 dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather, cast, pixelnorm, random flip, random translate: all on the data's device."""
    x = images.index_select(0, index).to(dtype)
    y = labels.index_select(0, index)
    x = (x - MEAN) / SCALE
    flip = (torch.rand(len(x), device=x.device) < 0.5).view(-1, 1, 1, 1)
    x = torch.where(flip, x.flip(-1), x)
    return translate(x, PAD), y


class DeviceBatches:
    """One epoch of the floor's batches per ``iter()``: a fresh permutation, N // B batches."""

    def __init__(self, data: Data, device: torch.device, batch_size: int, dtype: torch.dtype) -> None:
        self.images = torch.from_numpy(data.images).to(device)
        self.labels = torch.from_numpy(data.labels).to(device)
        self.batch_size, self.dtype = batch_size, dtype

    def __len__(self) -> int:
        return len(self.images) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.images), device=self.images.device)
        for step in range(len(self)):
            index = order[step * self.batch_size:(step + 1) * self.batch_size]
            yield device_batch(self.images, self.labels, index, self.dtype)


# ------------------------------------------------------------------------------ per-sample loader
class PerSampleCifar(Dataset):
    """torchvision's RandomCrop(S, padding=2) + RandomHorizontalFlip + ToTensor + Normalize,
    with torchvision if it imports, else the same with PIL and NumPy."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray) -> None:
        self.data, self.targets = images_hwc, labels
        self.size = images_hwc.shape[1]
        self.mean = torch.full((3, 1, 1), MEAN / SCALE)
        try:
            from torchvision import transforms as T
        except ImportError:
            self.pipeline = None
        else:
            self.pipeline = T.Compose([T.RandomCrop(self.size, padding=PAD), T.RandomHorizontalFlip(), T.ToTensor(),
                                       T.Normalize((MEAN / SCALE,) * 3, (1.0,) * 3)])

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = Image.fromarray(self.data[i])
        if self.pipeline is not None:
            return self.pipeline(img), int(self.targets[i])
        img = ImageOps.expand(img, border=PAD, fill=0)
        top, left = (int(v) for v in torch.randint(0, 2 * PAD + 1, (2,)))
        img = img.crop((left, top, left + self.size, top + self.size))
        if torch.rand(1).item() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.array(img, np.uint8, copy=True)).permute(2, 0, 1).contiguous().float().div(255)
        return x.sub_(self.mean), int(self.targets[i])


def per_sample_backend() -> str:
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return "PIL + NumPy (torchvision not installed)"
    return f"torchvision {torchvision.__version__}"


# ------------------------------------------------------------------------------ timing
@dataclass
class Setup:
    device: torch.device
    batch_size: int
    epochs: int  # timed, after one warm-up epoch
    precision: str
    workers: int

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.precision == "bf16-mixed" else torch.float32

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16-mixed":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def make_model(data: Data, width: dict[str, int], device: torch.device) -> torch.nn.Module:
    return SimpleCNN(data.meta, **width).to(device)


def make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)


def plain_loop(setup: Setup, model: torch.nn.Module, batches: Any) -> list[float]:
    """1 + ``epochs`` epochs of forward, loss, backward, step; seconds of each epoch."""
    optimizer = make_optimizer(model)
    model.train()
    seconds = []
    for _ in range(setup.epochs + 1):
        setup.sync()
        start = time.perf_counter()
        for x, y in batches:
            x = x.to(setup.device, non_blocking=True)
            y = y.to(setup.device, non_blocking=True)
            with setup.autocast():
                loss = F.cross_entropy(model({"stim": x})[HEAD].float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        setup.sync()
        seconds.append(time.perf_counter() - start)
    return seconds


def floor_row(setup: Setup, data: Data, width: dict[str, int]) -> list[float]:
    return plain_loop(setup, make_model(data, width, setup.device), DeviceBatches(data, setup.device, setup.batch_size,
                                                                                  setup.dtype))


def per_sample_row(setup: Setup, data: Data, width: dict[str, int]) -> list[float]:
    images_hwc = np.ascontiguousarray(data.images.transpose(0, 2, 3, 1))
    loader = DataLoader(PerSampleCifar(images_hwc, data.labels), batch_size=setup.batch_size, shuffle=True,
                        drop_last=True, num_workers=setup.workers, pin_memory=setup.device.type == "cuda",
                        persistent_workers=setup.workers > 0)
    return plain_loop(setup, make_model(data, width, setup.device), loader)


def epoch_timer(sync: Callable[[], None]) -> Any:
    from lightning.pytorch.callbacks import Callback

    class EpochTimer(Callback):
        """Seconds from ``on_train_epoch_start`` to ``on_train_epoch_end``, synchronised."""

        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.start = 0.0

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            sync()
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            sync()
            self.seconds.append(time.perf_counter() - self.start)

    return EpochTimer()


def lightning_bare_row(setup: Setup, data: Data, width: dict[str, int]) -> list[float]:
    import lightning

    class Bare(lightning.LightningModule):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            x, y = batch
            return F.cross_entropy(self.model({"stim": x})[HEAD].float(), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return make_optimizer(self)

    timer = epoch_timer(setup.sync)
    trainer = lightning.Trainer(
        max_epochs=setup.epochs + 1, accelerator=accelerator(setup.device), devices=1, precision=setup.precision,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[timer],
    )
    batches = DeviceBatches(data, setup.device, setup.batch_size, setup.dtype)
    trainer.fit(Bare(make_model(data, width, torch.device("cpu"))), train_dataloaders=batches)
    return timer.seconds


def accelerator(device: torch.device) -> str:
    return "gpu" if device.type == "cuda" else "cpu"


class Unavailable(Exception):
    """A row that cannot run here (the reason is printed in place of its figures)."""


def core_train_row(setup: Setup, data: Data, width: dict[str, int], placement: str,
                   compile_: bool = False) -> list[float]:
    from core.config import parse_config
    from core.errors import ConfigError
    from core.registry import AUTOLOAD_ENV, Registry
    from core.resolve import resolve
    from core.run import build_trainer

    raw: dict[str, Any] = {
        "name": "gpu_step",
        "seed": 0,
        "data": {
            "format": "synthetic_cifar",
            "storage": "uint8",
            "transforms": ["pixelnorm", "random_flip", {"random_translate": {"pixels": PAD}}],
            "sampler": "random",
            "batch_size": setup.batch_size,
            "placement": placement,
        },
        "model": {"simple_cnn": dict(width)},
        "optim": {"optimizer": "adamw", "lr": LR},
        "trainer": {
            "max_epochs": setup.epochs + 1, "accelerator": accelerator(setup.device), "devices": 1,
            "precision": setup.precision, "enable_progress_bar": False, "enable_model_summary": False,
            "limit_val_batches": 0, "num_sanity_val_steps": 0,
        },
    }
    if compile_:
        raw["compile"] = {"mode": "default"}
    with tempfile.TemporaryDirectory(prefix="gpu_step_") as tmp:
        raw["output_dir"] = tmp
        try:
            config = parse_config(raw)
        except ConfigError as exc:
            if compile_:
                raise Unavailable(f"parse_config refuses the compile section: {exc}") from None
            raise
        # with CORE_DISABLE_PLUGIN_AUTOLOAD set (the tests' convention) name the plugins the run uses
        autoload_off = os.environ.get(AUTOLOAD_ENV, "") not in ("", "0")
        only = ["uint8_pixelnorm", "pixelnorm", "augment", "samplers", "simple_cnn"] if autoload_off else None
        registry = Registry.load(only=only)
        registry.add(synthetic_plugin(data))
        resolved = resolve(config, registry)
        run_dir = Path(tmp) / config.name
        run_dir.mkdir(parents=True)
        timer = epoch_timer(setup.sync)
        trainer, datamodule, module, _best = build_trainer(resolved, run_dir, extra_callbacks=[timer])
        graphs = _compiled_graphs()
        with contextlib.redirect_stdout(io.StringIO()):  # the epoch_summary callback prints a line per epoch
            trainer.fit(module, datamodule=datamodule)
        if compile_ and _compiled_graphs() == graphs:
            raise Unavailable("compile section accepted, but torch._dynamo compiled no graph during fit "
                              "(core does not apply it yet?)")
    return timer.seconds


def _compiled_graphs() -> int:
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return 0
    return int(counters["stats"]["unique_graphs"])


def run_row(key: str, setup: Setup, data: Data, width: dict[str, int]) -> dict[str, Any]:
    import lightning

    lightning.seed_everything(0, verbose=False)
    start = time.perf_counter()
    try:
        if key == "floor":
            seconds = floor_row(setup, data, width)
        elif key == "core-train-host":
            seconds = core_train_row(setup, data, width, "host")
        elif key == "core-train-device":
            seconds = core_train_row(setup, data, width, "device")
        elif key == "core-train-device-compile":
            try:
                seconds = core_train_row(setup, data, width, "device", compile_=True)
            except Unavailable:
                raise
            except Exception as exc:  # noqa: BLE001 (a compiler that fails here is reported, not fatal)
                first_line = (str(exc).splitlines() or [""])[0]
                raise Unavailable(f"failed: {type(exc).__name__}: {first_line}") from exc
        elif key == "lightning-bare":
            seconds = lightning_bare_row(setup, data, width)
        elif key == "per-sample":
            seconds = per_sample_row(setup, data, width)
        else:
            raise ValueError(key)
    except Unavailable as exc:
        return {"ms_per_epoch": None, "unavailable": str(exc), "wall_s": time.perf_counter() - start}
    if len(seconds) != setup.epochs + 1:
        raise RuntimeError(f"row {key}: {len(seconds)} epochs timed, expected {setup.epochs + 1}")
    timed = [s * 1000 for s in seconds[1:]]
    return {"ms_per_epoch": statistics.median(timed), "best_ms": min(timed), "epochs_ms": timed,
            "warmup_ms": seconds[0] * 1000, "wall_s": time.perf_counter() - start}


def merge(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """One row's runs of several rounds as one: the median and the best of all their timed epochs."""
    if any(r["ms_per_epoch"] is None for r in repeats):
        return repeats[0]
    timed = [ms for r in repeats for ms in r["epochs_ms"]]
    return {**repeats[0], "ms_per_epoch": statistics.median(timed), "best_ms": min(timed), "epochs_ms": timed,
            "wall_s": sum(r["wall_s"] for r in repeats)}


# ------------------------------------------------------------------------------ main
def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    return f"CPU ({cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n", type=int, help="training samples (default 45000 on cuda, 2048 on cpu)")
    parser.add_argument("--image-size", type=int, default=32, help="S of the (3, S, S) images (>= 16)")
    parser.add_argument("--batch-size", type=int, help="default 512 on cuda, 128 on cpu")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs, after one warm-up epoch")
    parser.add_argument("--precision", choices=["bf16-mixed", "32-true"],
                        help="default bf16-mixed on cuda, 32-true on cpu")
    parser.add_argument("--workers", type=int,
                        help="per-sample loader's DataLoader workers (default 16 on cuda, 2 on cpu)")
    parser.add_argument("--compile", action="store_true", help="add the row core-train-device-compile")
    parser.add_argument("--rows", help=f"comma-separated subset of: {', '.join(ROWS)}")
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds over all rows (interleaved, so slow phases of a shared machine hit every row)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--widths", default="small,wide", help=f"comma-separated subset of: {', '.join(WIDTHS)}")
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda: torch.cuda.is_available() is false")
    args.n = args.n if args.n is not None else (45_000 if cuda else 2048)
    args.batch_size = args.batch_size if args.batch_size is not None else (512 if cuda else 128)
    args.precision = args.precision or ("bf16-mixed" if cuda else "32-true")
    args.workers = args.workers if args.workers is not None else (16 if cuda else 2)
    if args.rows:
        args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    else:
        args.rows = [r for r in ROWS if r != "core-train-device-compile"]
    if args.compile and "core-train-device-compile" not in args.rows:
        args.rows.append("core-train-device-compile")
    args.widths = [w.strip() for w in args.widths.split(",") if w.strip()]
    for given, known, flag in ((args.rows, ROWS, "--rows"), (args.widths, WIDTHS, "--widths")):
        unknown = [x for x in given if x not in known]
        if unknown or not given:
            parser.error(f"{flag}: unknown or empty {unknown}; choose from {', '.join(known)}")
    if "floor" not in args.rows:
        args.rows.insert(0, "floor")  # every ratio is to the floor
    if args.image_size < 16 or args.n < args.batch_size or args.epochs < 1:
        parser.error("need --image-size >= 16, --n >= --batch-size and --epochs >= 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import lightning

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    setup = Setup(device, args.batch_size, args.epochs, args.precision, args.workers)
    steps = args.n // args.batch_size
    data = make_data(args.n, args.image_size)
    result: dict[str, Any] = {
        "device": device_name(device), "torch": torch.__version__, "lightning": lightning.__version__,
        "n": args.n, "image_size": args.image_size, "batch_size": args.batch_size, "steps_per_epoch": steps,
        "precision": args.precision, "epochs_timed": args.epochs, "workers": args.workers,
        "per_sample_backend": per_sample_backend(), "widths": {},
    }
    print(f"gpu_step: {result['device']}; torch {torch.__version__}, lightning {lightning.__version__}")
    print(f"N {args.n} x 3x{args.image_size}x{args.image_size} uint8, batch {args.batch_size} ({steps} steps/epoch, "
          f"last partial batch dropped), precision {args.precision}, {args.epochs} timed epochs after 1 warm-up; "
          f"per-sample loader: {args.workers} workers, {result['per_sample_backend']}", flush=True)

    pl_log = logging.getLogger("lightning.pytorch")
    old_level = pl_log.level
    pl_log.setLevel(logging.WARNING)  # "GPU available: ...", "`Trainer.fit` stopped: ..."
    try:
        with warnings.catch_warnings():
            for pattern in QUIET:
                warnings.filterwarnings("ignore", message=pattern)
            for width_name in args.widths:
                width = WIDTHS[width_name]
                rounds = [{key: run_row(key, setup, data, width) for key in args.rows} for _ in range(args.repeats)]
                rows = {key: merge([r[key] for r in rounds]) for key in args.rows}
                result["widths"][width_name] = report(width_name, width, rows, steps)
    finally:
        pl_log.setLevel(old_level)
    print("RESULT " + json.dumps(result, allow_nan=False))
    return result


def report(width_name: str, width: dict[str, int], rows: dict[str, dict[str, Any]], steps: int) -> dict[str, Any]:
    floor = rows["floor"]["ms_per_epoch"]
    for r in rows.values():
        r["x_floor"] = r["ms_per_epoch"] / floor if r["ms_per_epoch"] is not None else None
    print(f"\n{width_name}: simple_cnn conv1/conv2/fc_hidden = {width['conv1']}/{width['conv2']}/{width['fc_hidden']}")
    print(f"  {'path':<28} {'ms/epoch':>10} {'x floor':>8} {'best ms':>9}")
    for key, r in rows.items():
        if r["ms_per_epoch"] is None:
            print(f"  {ROWS[key]:<28} {'n/a':>10} {'':>8}  unavailable: {r['unavailable']}")
        else:
            print(f"  {ROWS[key]:<28} {r['ms_per_epoch']:>10.1f} {r['x_floor']:>8.2f} {r['best_ms']:>9.1f}")
    overhead = {}
    for placement in ("host", "device"):  # from the best epochs: a shared machine's noise only adds time
        r = rows.get(f"core-train-{placement}")
        if r is not None and r["ms_per_epoch"] is not None:
            overhead[placement] = (r["best_ms"] - rows["floor"]["best_ms"]) / steps * 1000
    if overhead:
        print("  core-train overhead per step (us): "
              + ", ".join(f"{placement} {us:.0f}" for placement, us in overhead.items()))
    out = {"model": {"simple_cnn": dict(width)}, "rows": {ROWS[k]: r for k, r in rows.items()},
           "overhead_us_per_step": overhead}
    return json.loads(json.dumps(out, allow_nan=False))  # a non-finite figure fails here, not in the docs


if __name__ == "__main__":
    main()
