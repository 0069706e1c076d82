"""Who reads what: a split's shards and samples divided among ranks and workers for an epoch.

Training shards are shuffled from (seed, epoch), the same order on every rank; rank ``r`` of
``w`` takes shards ``r, r + w, ...`` and each worker a stride of those. Evaluation keeps the
shards in order; when they do not divide evenly among the ranks, every rank reads every
shard and keeps its stride of each shard's samples instead, so each sample is still
evaluated exactly once and no rank is left without data.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ReadPlan:
    """What every worker of every rank must agree on to read disjoint shares of a split."""

    split: str
    shards: list[str]
    train: bool
    seed: int
    rank: int
    world_size: int
    shuffle_buffer: int
    resampled: bool
    epoch_length: int | None
    skip_bad: bool
    allow_pipe: bool = False
    cache_dir: str | None = None  # remote shards are fetched into it once (plugins.webdataset.cache)

    @property
    def by_sample(self) -> bool:
        """Evaluation on ranks the shards do not divide among: split samples, not shards."""
        return not self.train and len(self.shards) % self.world_size != 0

    def epoch_order(self, epoch: int) -> list[str]:
        """The shards in this epoch's order: shuffled from (seed, epoch) when training."""
        order = list(self.shards)
        if self.train:
            random.Random(f"{self.seed}:{epoch}").shuffle(order)
        return order

    def rank_shards(self, epoch: int) -> list[str]:
        order = self.epoch_order(epoch)
        return order if self.by_sample else order[self.rank :: self.world_size]

    def keeps(self, url: str, index: int) -> bool:
        """Whether this rank takes sample ``index`` of shard ``url`` (always, unless ``by_sample``)."""
        return not self.by_sample or (_offset(url) + index) % self.world_size == self.rank

    def rank_counts(self, sizes: dict[str, int], epoch: int) -> list[int]:
        """Samples each rank reads in ``epoch``, given every shard's sample count."""
        counts, w = [], self.world_size
        for rank in range(w):
            if self.by_sample:  # the indices i < size with (offset + i) % w == rank
                count = sum(size // w + ((rank - _offset(url)) % w < size % w) for url, size in sizes.items())
            else:
                count = sum(sizes[url] for url in replace(self, rank=rank).rank_shards(epoch))
            counts.append(count)
        return counts


def _offset(url: str) -> int:
    """Where a shard's stride starts (the same on every rank, varying between shards so that
    small shards do not all land on rank 0)."""
    return zlib.crc32(url.encode())
