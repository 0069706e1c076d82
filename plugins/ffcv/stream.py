"""Batches from FFCV's ``Loader`` as core batch dicts, sharded by our rank/world size.

The order of ``random`` and ``sequential`` is ours (the same permutation of (seed, epoch)
as the ``random`` sampler, sharded disjointly across ranks), plugged into FFCV's loader as
its traversal order: distributed runs need no process group inside FFCV, a resumed run
sees the epoch order it would have seen, and disjointness is testable. ``quasi_random`` is
FFCV's own (page-aware, for files larger than RAM); FFCV refuses it with ``distributed``.

For a file larger than ``large_fraction`` of the available RAM the loader is adjusted as
our users' FFCV loaders did (smaller batches, fewer batches ahead, ``quasi_random``, no OS
cache, fewer workers); each change is logged with its reason (``auto_adjust: false`` keeps
the options as given).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ffcv.traversal_order.base import TraversalOrder

from core import Batch, ConfigError, InOrder, Stream
from core.memory import available_ram, human

log = logging.getLogger("core")


@dataclass(frozen=True)
class FFCVOptions:
    order: str
    os_cache: bool
    batches_ahead: int
    drop_last: bool
    distributed: bool | None
    num_workers: int | None
    auto_adjust: bool
    large_fraction: float
    large_batch_size: int


def adjust_for_size(options: FFCVOptions, batch_size: int, num_workers: int, file_bytes: int, ram: int,
                    world_size: int) -> tuple[FFCVOptions, int, int, list[str]]:
    """The seed's adjustments for a file above ``large_fraction`` of RAM, and why each was made."""
    if not options.auto_adjust or file_bytes <= options.large_fraction * ram:
        return options, batch_size, num_workers, []
    why = f"the file ({human(file_bytes)}) exceeds {options.large_fraction:.0%} of the available RAM ({human(ram)})"
    notes = []
    if batch_size > options.large_batch_size:
        notes.append(f"batch size {batch_size} -> {options.large_batch_size}")
        batch_size = options.large_batch_size
    if options.batches_ahead > 2:
        notes.append(f"batches_ahead {options.batches_ahead} -> 2")
        options = replace(options, batches_ahead=2)
    if options.order == "random" and world_size == 1:
        notes.append("order random -> quasi_random (reads whole pages)")
        options = replace(options, order="quasi_random")
    if options.os_cache:
        notes.append("os_cache on -> off (the page cache cannot hold the file)")
        options = replace(options, os_cache=False)
    fewer = max(1, (os.cpu_count() or 2) // 2)
    if num_workers > fewer:
        notes.append(f"num_workers {num_workers} -> {fewer}")
        num_workers = fewer
    return options, batch_size, num_workers, [f"ffcv: {note}, because {why} (auto_adjust: false keeps it)" for note in notes]


class FFCVStream(Stream):
    def __init__(self, path: Path, fields: list[str], image: str, heads: list[str], arrays: list[str],
                 options: FFCVOptions) -> None:
        self.path, self.fields, self.options = path, fields, options
        self.image, self.heads, self.arrays = image, heads, arrays

    def batches(self, *, batch_size: int, train: bool, seed: int, epoch: Callable[[], int], rank: int, world_size: int,
                num_workers: int) -> FFCVBatches:
        options = self.options if train else replace(self.options, order="sequential", drop_last=False)
        workers = options.num_workers or num_workers or os.cpu_count() or 1
        options, batch_size, workers, notes = adjust_for_size(options, batch_size, workers, self.path.stat().st_size,
                                                              available_ram(), world_size)
        for note in notes:
            log.info(note)
        shard = world_size > 1 and options.distributed is not False
        if shard and options.order == "quasi_random":
            raise ConfigError("data.format.ffcv.order", "FFCV's quasi_random order cannot be distributed "
                              f"(this run has {world_size} ranks)", fix="use order: random (or sequential)")
        loader = self._loader(batch_size, seed, workers, options, rank if shard else 0, world_size if shard else 1)
        return FFCVBatches(loader, self.output_keys(), set(self.heads), epoch)

    def _loader(self, batch_size: int, seed: int, workers: int, options: FFCVOptions, rank: int, world_size: int) -> Any:
        from ffcv.fields.decoders import IntDecoder, NDArrayDecoder, SimpleRGBImageDecoder
        from ffcv.loader import Loader, OrderOption
        from ffcv.transforms import Squeeze, ToTensor, ToTorchImage

        pipelines: dict[str, Any] = {self.image: [SimpleRGBImageDecoder(), ToTensor(), ToTorchImage(channels_last=False)]}
        pipelines.update({head: [IntDecoder(), ToTensor(), Squeeze(1)] for head in self.heads})
        pipelines.update({name: [NDArrayDecoder(), ToTensor()] for name in self.arrays})
        pipelines.update({name: None for name in self.fields if name not in pipelines})  # not decoded at all
        quasi = options.order == "quasi_random"
        threads = torch.get_num_threads()  # FFCV sets torch's thread count to its own; ours stays
        loader = Loader(
            str(self.path), batch_size=batch_size, num_workers=workers, os_cache=options.os_cache,
            order=OrderOption.QUASI_RANDOM if quasi else OrderOption.SEQUENTIAL, seed=seed,
            pipelines=pipelines, drop_last=options.drop_last, batches_ahead=options.batches_ahead,
        )
        torch.set_num_threads(threads)
        if not quasi:
            loader.traversal_order = ShardedOrder(loader, options.order == "random", rank, world_size)
            loader.first_traversal_order = loader.next_traversal_order()
        return loader

    def output_keys(self) -> list[str]:
        """Batch keys in the order FFCV yields the decoded fields (file order); the image is ``stim``."""
        used = {self.image, *self.heads, *self.arrays}
        return ["stim" if name == self.image else name for name in self.fields if name in used]

    def __repr__(self) -> str:
        return f"FFCVStream({self.path})"


def sharded_order(n: int, shuffle: bool, seed: int, epoch: int, rank: int, world_size: int) -> np.ndarray:
    """This rank's positions for an epoch: the ``random`` sampler's permutation, or in order."""
    if shuffle:
        from plugins.samplers.order import RandomOrder

        return RandomOrder().indices(n, epoch=epoch, seed=seed, rank=rank, world_size=world_size)
    return InOrder().indices(n, epoch=epoch, seed=seed, rank=rank, world_size=world_size)


class ShardedOrder(TraversalOrder):
    def __init__(self, loader: Any, shuffle: bool, rank: int, world_size: int) -> None:
        super().__init__(loader)
        self.shuffle, self.rank, self.world_size = shuffle, rank, world_size

    def sample_order(self, epoch: int) -> np.ndarray:
        positions = sharded_order(len(self.indices), self.shuffle, self.seed, epoch, self.rank, self.world_size)
        return self.indices[positions]


class FFCVBatches:
    """One epoch of FFCV batches per ``iter()``, as dicts; FFCV's epoch set from ours first."""

    def __init__(self, loader: Any, keys: list[str], heads: set[str], epoch: Callable[[], int]) -> None:
        self.loader, self.keys, self.heads, self.epoch = loader, keys, heads, epoch

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        self.loader.next_epoch = self.epoch()
        threads = torch.get_num_threads()
        # FFCV allocates its batch buffers here and fills them from its own thread; inference mode is
        # thread-local, so buffers made under Lightning's evaluation inference mode could not be filled
        with torch.inference_mode(False):
            batches = iter(self.loader)
        torch.set_num_threads(threads)  # FFCV set torch's thread count to its num_workers again
        for values in batches:
            # labels become int64 (new tensors); stim stays FFCV's uint8 buffer until the device
            yield {key: value.long() if key in self.heads else value for key, value in zip(self.keys, values)}
