"""The ``webdataset`` format's Stream: one epoch of batches per ``iter()``, as the core asks.

Workers are torch DataLoader workers (``batch_size=None``: each worker batches its own
samples). A worker's last batch is usually partial; those tails are merged here into full
batches, so an epoch has at most one partial batch per rank (dropped when training).

Training ranks split shards, so they see equal sample counts only when the shards divide
evenly among them: an uneven split is warned about, and every rank stops at the smallest
rank's number of batches (known from the sidecar's sample counts), so that no rank waits
for a gradient step the others never take. Evaluation reads every sample exactly once
across ranks (plugins.webdataset.plan).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader

from core import Batch, DataError, Stream
from plugins.webdataset.pipeline import ERROR, SKIPPED, EpochSamples
from plugins.webdataset.plan import ReadPlan
from plugins.webdataset.samples import SampleSpec
from plugins.webdataset.sidecar import SIDECAR

log = logging.getLogger("core.webdataset")


@dataclass(frozen=True)
class ReadOptions:
    shuffle_buffer: int
    resampled: bool
    epoch_length: int | None
    skip_bad: bool
    allow_pipe: bool = False
    cache_dir: str | None = None


class WebDatasetStream(Stream):
    def __init__(self, split: str, shards: list[str], spec: SampleSpec, options: ReadOptions,
                 shard_sizes: list[int] | None) -> None:
        self.split, self.shards, self.spec, self.options, self.shard_sizes = split, shards, spec, options, shard_sizes

    def batches(self, *, batch_size: int, train: bool, seed: int, epoch: Callable[[], int], rank: int, world_size: int,
                num_workers: int) -> StreamBatches:
        options = self.options
        # resampling and epoch_length shape training epochs; evaluation reads every sample once
        plan = ReadPlan(self.split, self.shards, train, seed, rank, world_size, options.shuffle_buffer,
                        options.resampled and train, options.epoch_length if train else None, options.skip_bad,
                        options.allow_pipe, options.cache_dir)
        if train and not plan.resampled:
            self._check_training_split(plan, max(1, num_workers))
        return StreamBatches(EpochSamples(plan, self.spec, batch_size), num_workers, epoch, self._counts(plan))

    def _counts(self, plan: ReadPlan) -> Callable[[int], list[int] | None]:
        """Samples each rank reads in an epoch, when known (epoch_length, or the sidecar's counts)."""
        sizes = dict(zip(self.shards, self.shard_sizes)) if self.shard_sizes is not None else None

        def counts(epoch: int) -> list[int] | None:
            if plan.epoch_length:
                return [plan.epoch_length] * plan.world_size
            return plan.rank_counts(sizes, epoch) if sizes is not None else None

        return counts

    def _check_training_split(self, plan: ReadPlan, workers: int) -> None:
        """Refuse a rank without shards; warn when ranks get unequal shares; note idle workers
        (rank 0 speaks for all: every rank comes to the same conclusions)."""
        n, ranks = len(plan.shards), plan.world_size
        fix = (f"write equal shards, as many as a multiple of {ranks} (core-data convert --to webdataset --to-option "
               "shard_size=...), or set epoch_length (each rank then reads that many training samples per epoch)")
        if n < ranks:
            raise DataError(f"webdataset: the {plan.split} split has {n} shard(s), fewer than the run's {ranks} ranks: "
                            f"a rank would train on nothing\n  fix: {fix}")
        if plan.rank != 0:
            return
        counts = self._counts(plan)(0)
        if not plan.epoch_length and (n % ranks or (counts is not None and len(set(counts)) > 1)):
            seen = f"{min(counts)} to {max(counts)} samples" if counts is not None else "unequal numbers of samples"
            effect = ("each epoch stops at the smallest rank's number of batches" if counts is not None
                      else "ranks may run out of batches at different steps (DDP can then hang)")
            log.warning(f"webdataset: the {n} {plan.split} shards give {ranks} ranks unequal shares: ranks read {seen} "
                        f"per epoch, so {effect}; to even them, {fix}")
        if n < ranks * workers:
            log.info(f"webdataset: the {plan.split} split has {n} shard(s) for {ranks} rank(s) x {workers} worker(s): "
                     "some workers have no shard to read (more, smaller shards read faster)")


class Tally:
    """One epoch's reading on one rank, gathered in the main process: samples delivered, and
    the skip counts each worker sent with its batches (the latest per worker)."""

    def __init__(self) -> None:
        self.samples = 0
        self.workers: dict[int, tuple[int, int, str]] = {}

    def note(self, counts: Any) -> None:
        if counts:
            worker, samples, shards, first = counts
            self.workers[int(worker)] = (int(samples), int(shards), str(first))

    @property
    def skipped(self) -> dict[str, int]:
        return {"samples": sum(c[0] for c in self.workers.values()), "shards": sum(c[1] for c in self.workers.values())}

    def first(self) -> str:
        return next((c[2] for _, c in sorted(self.workers.items()) if c[2]), "")


class StreamBatches:
    """One epoch of batches per ``iter()``; its length, when the sample counts are known.

    When an epoch ends, the samples skipped as bad (``handler: warn_and_continue``) are
    reported for the split, and an epoch that gave no batch at all is a DataError. With
    ``warn_and_continue`` a training epoch has no length: a skipped sample shortens it, and
    Lightning validates only after the number of batches a length promises."""

    def __init__(self, samples: EpochSamples, num_workers: int, epoch: Callable[[], int],
                 counts: Callable[[int], list[int] | None]) -> None:
        # not named ``dataset``: Lightning would take this for a DataLoader over an IterableDataset and warn
        self.samples, self.epoch, self.counts = samples, epoch, counts
        self.skipped: dict[str, int] = {"samples": 0, "shards": 0}  # in the last epoch that ended (for loggers)
        self.pin = torch.cuda.is_available()
        self.loader = DataLoader(samples, batch_size=None, num_workers=num_workers, pin_memory=self.pin,
                                 worker_init_fn=_freeze_inherited)

    def _length(self, counts: list[int]) -> int:
        plan, size = self.samples.plan, self.samples.batch_size
        if plan.train:  # the smallest rank's count on every rank: equal steps under DDP
            return min(count // size for count in counts)
        return -(-counts[plan.rank] // size)

    def __len__(self) -> int:
        plan = self.samples.plan
        if plan.train and plan.skip_bad and not plan.resampled:
            raise TypeError("the number of batches is unknown: with handler: warn_and_continue a bad sample shortens "
                            "the epoch")
        counts = self.counts(self.epoch())
        if counts is None:
            raise TypeError("the number of batches is unknown: the shards have no dataset_info.json sample counts")
        return self._length(counts)

    def __iter__(self) -> Iterator[Batch]:
        epoch = self.epoch()
        self.samples.epoch = epoch  # before the workers start: each takes a copy
        counts = self.counts(epoch)
        plan = self.samples.plan
        limit = self._length(counts) if plan.train and counts is not None else None
        return self._epoch(epoch, limit)

    def _epoch(self, epoch: int, limit: int | None) -> Iterator[Batch]:
        """The epoch's batches (at most ``limit``); then its report."""
        plan, tally = self.samples.plan, Tally()
        batches = merge_tails(self.loader, self.samples.batch_size, drop_last=plan.train, pin=self.pin, tally=tally)
        given = 0
        while limit is None or given < limit:
            batch = next(batches, None)
            if batch is None:
                break
            given += 1
            yield batch
        del batches  # the DataLoader's workers stop here, not when the next epoch starts
        self.skipped = tally.skipped
        where = f"the {plan.split} split in epoch {epoch}" + (f" (rank {plan.rank})" if plan.world_size > 1 else "")
        skipped = tally.skipped
        what = [f"{skipped['samples']} bad sample(s)"] if skipped["samples"] else []
        what += [f"the rest of {skipped['shards']} truncated or corrupt shard(s)"] if skipped["shards"] else []
        if what:
            log.warning(f"webdataset: skipped {' and '.join(what)} of {where}; the first: {tally.first()}")
        if given == 0:
            shards = ", ".join(plan.shards[:5]) + (f" and {len(plan.shards) - 5} more" if len(plan.shards) > 5 else "")
            if what:
                why = f"every sample read was skipped as bad ({' and '.join(what)}; the first: {tally.first()})"
            elif limit == 0:
                why = (f"the sample counts of {SIDECAR} leave a rank fewer samples than one batch of "
                       f"{self.samples.batch_size}, and training drops an incomplete batch")
            else:
                why = (f"it read {tally.samples} sample(s), fewer than one batch of {self.samples.batch_size}, and "
                       "training drops an incomplete batch") if plan.train else "its shards hold no sample"
            raise DataError(f"webdataset: {where} gave no batch: {why}; shards: {shards}\n  fix: rewrite or remove the "
                            "bad shards (core-data validate FOLDER lists every problem), or give the split more samples")


def _freeze_inherited(worker: int) -> None:
    """A DataLoader worker's first act: exempt what it inherited from the training process from
    garbage collection. Otherwise its collector walks those millions of objects (writing to
    their pages, which the fork then copies): 1 to 2 s of CPU per worker per epoch (a 2-epoch
    digits run with 2 workers took 18 s of CPU, 9 s with this)."""
    gc.freeze()


def merge_tails(batches: Iterable[Batch], size: int, drop_last: bool, pin: bool,
                tally: Tally | None = None) -> Iterator[Batch]:
    """Full batches as they come; partial ones (each worker's last) merged into full ones
    (pinned like the loader's when ``pin``). The remainder is dropped when ``drop_last``,
    else given as a last, smaller batch. A worker's error item is raised here; its skip
    counts are taken off its batches into ``tally``."""
    tally = tally if tally is not None else Tally()

    def merge(parts: list[Batch]) -> Batch:
        merged = {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
        return {key: value.pin_memory() for key, value in merged.items()} if pin else merged

    pending: list[Batch] = []
    held = 0
    for batch in batches:
        if ERROR in batch:  # a worker's DataError
            raise DataError(batch[ERROR])
        if SKIPPED in batch:
            tally.note(batch.pop(SKIPPED))
            if "stim" not in batch:  # a worker's last counts, sent alone
                continue
        n = len(batch["stim"])
        tally.samples += n
        if n == size:
            yield batch
            continue
        pending.append(batch)
        held += n
        if held >= size:
            merged = merge(pending)
            yield {key: value[:size] for key, value in merged.items()}
            held -= size
            pending = [{key: value[size:] for key, value in merged.items()}] if held else []
    if held and not drop_last:
        yield merge(pending)
