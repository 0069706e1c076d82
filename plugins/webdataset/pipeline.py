"""One rank's share of a split for one epoch, read inside each DataLoader worker.

Built from webdataset's pieces when a worker starts iterating, so each worker knows who it
is (our rank and world size, given by the core, and torch's worker info; never
torch.distributed's environment, which webdataset's own node splitter reads):

    shards: this rank's (plugins.webdataset.plan), this worker's stride of them; or, with
            ``resampled``, shards drawn with replacement (webdataset's ResampledShards)
    -> samples (plugins.webdataset.tarfiles) -> shuffle buffer (training)
    -> decode and check (SampleSpec.decode) -> with_epoch (epoch_length) -> batched

Only the shuffle buffer and the batches in flight are held in memory.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

from torch.utils.data import IterableDataset, get_worker_info

from core import Batch, DataError
from plugins.webdataset.cache import cached
from plugins.webdataset.plan import ReadPlan
from plugins.webdataset.samples import SampleSpec
from plugins.webdataset.tarfiles import ShardError, shard_samples

ERROR = "__error__"  # key of the item a worker sends instead of raising (see EpochSamples.__iter__)
SKIPPED = "__skipped__"  # key of a worker's skip counts, (worker, samples, shards, first), sent with its batches
MAX_FAILED_DRAWS = 100  # resampled shards unreadable in a row before giving up (an endless loop otherwise)


class BadSamples:
    """The pipeline's exception handler for bad data: raise it as one clear error, or skip
    it and count it (``warn_and_continue``); the counts travel to the main process with the
    worker's batches, which reports them per split when the epoch ends."""

    def __init__(self, plan: ReadPlan, epoch: int, worker: int) -> None:
        self.plan, self.epoch, self.worker = plan, epoch, worker
        self.samples = self.shards = 0
        self.first: str | None = None

    def __call__(self, exc: Exception) -> bool:
        if not isinstance(exc, DataError):
            raise exc  # a bug, not bad data: never skipped
        if not self.plan.skip_bad:
            raise DataError(f"{exc}\n  fix: rewrite or remove that shard (core-data validate FOLDER lists every "
                            "problem), or set the format option handler: warn_and_continue to skip bad samples") from None
        if isinstance(exc, ShardError):
            self.shards += 1
        else:
            self.samples += 1
        self.first = self.first or str(exc)
        return True

    def counts(self, worker: int) -> tuple[int, int, int, str] | None:
        """What to send with the next batch: (worker, samples, shards, first), or None if nothing was skipped."""
        return (worker, self.samples, self.shards, self.first or "") if self.samples or self.shards else None


def read_shards(urls: Iterable[str | dict[str, str]], bad: BadSamples) -> Iterator[dict[str, Any]]:
    """Samples of each shard in turn; a shard that cannot be read to its end goes to ``bad``."""
    failed_in_a_row = 0
    for url in urls:
        url = url["url"] if isinstance(url, dict) else url  # ResampledShards gives {"url": ...}
        try:
            for index, sample in enumerate(shard_samples(cached(url, bad.plan.cache_dir), bad.plan.allow_pipe)):
                if bad.plan.keeps(url, index):
                    yield sample
            failed_in_a_row = 0
        except ShardError as exc:
            bad(exc)
            failed_in_a_row += 1
            if bad.plan.resampled and failed_in_a_row >= MAX_FAILED_DRAWS:
                raise DataError(f"webdataset: {failed_in_a_row} shards drawn in a row could not be read; the last: "
                                f"{exc}") from None


class EpochSamples(IterableDataset):
    """Batches of one rank for one epoch; each DataLoader worker builds and runs its own pipeline.

    ``epoch`` is set by the main process before each epoch's workers start. A worker sends a
    DataError as an item ``{ERROR: message}`` for the main process to raise: raised in the
    worker, torch would re-raise it with the worker's traceback as its message. Its skip
    counts so far go with each batch after a skip (key ``SKIPPED``), and alone at its end if
    they changed after its last batch.
    """

    def __init__(self, plan: ReadPlan, spec: SampleSpec, batch_size: int) -> None:
        self.plan, self.spec, self.batch_size = plan, spec, batch_size
        self.epoch = 0

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch = self.epoch
        bad = BadSamples(self.plan, epoch, worker)
        sent = None
        try:
            for batch in self._pipeline(epoch, worker, workers, bad):
                counts = bad.counts(worker)
                if counts != sent:
                    batch[SKIPPED] = sent = counts
                yield batch
        except DataError as exc:
            if info is None:
                raise
            yield {ERROR: str(exc)}
        counts = bad.counts(worker)
        if counts != sent:
            yield {SKIPPED: counts}

    def _pipeline(self, epoch: int, worker: int, workers: int, bad: BadSamples) -> Any:
        import webdataset as wds

        plan = self.plan
        if plan.resampled:
            source: Any = wds.ResampledShards(plan.shards, seed=_seed(plan.seed, epoch), deterministic=True,
                                              worker_seed=lambda: _seed(plan.rank, worker))
        else:
            shards = plan.rank_shards(epoch)[worker::workers]
            source = lambda: iter(shards)  # noqa: E731 (DataPipeline would splice a list in as stages)
        stages = [source, wds.pipelinefilter(read_shards)(bad)]
        if plan.train and plan.shuffle_buffer > 1:
            rng = random.Random(f"{plan.seed}:{epoch}:{plan.rank}:{worker}")
            stages.append(wds.shuffle(plan.shuffle_buffer, initial=plan.shuffle_buffer, rng=rng))
        stages.append(wds.map(self.spec.decode, handler=bad))
        samples = wds.DataPipeline(*stages)
        if plan.epoch_length:
            samples = samples.with_epoch(_share(plan.epoch_length, worker, workers))
        return wds.DataPipeline(samples, wds.batched(self.batch_size, collation_fn=self.spec.collate, partial=True))


def _seed(*parts: int) -> int:
    return zlib.crc32(":".join(map(str, parts)).encode())


def _share(total: int, worker: int, workers: int) -> int:
    """Worker ``worker``'s part of ``total`` samples, so that the parts add up to it exactly."""
    return total // workers + (worker < total % workers)
