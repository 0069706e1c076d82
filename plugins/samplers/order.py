"""Index orders for one epoch, sharded across ranks (disjoint, equal length)."""

from __future__ import annotations

import numpy as np

from core import InOrder, Sampler


class RandomOrder(Sampler):
    """A permutation drawn from ``(seed, epoch)``: the same on every rank, so shards are disjoint,
    and the same after a resume, so a continued run sees the order it would have seen."""

    def indices(self, n: int, *, epoch: int, seed: int, rank: int, world_size: int) -> np.ndarray:
        order = np.random.default_rng((seed, epoch)).permutation(n)
        return self.shard(order, rank, world_size)


class SequentialOrder(InOrder):
    """Every index once, in order, every epoch."""
