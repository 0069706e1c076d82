"""Sampler ``class_balanced``: every epoch draws as many samples of each class.

An epoch has as many indices as the training split (``n``), so its number of batches is the
usual one: each of the ``k`` classes that have samples gets ``n // k`` draws, and the
``n % k`` left over go one each to classes drawn at random that epoch. A class with at
least its share is drawn without replacement; a smaller class gives every sample
``share // size`` times and a random ``share % size`` of them once more (over-sampled,
never more than one repeat apart). The order is a function of ``(seed, epoch)``, the same
on every rank, and :meth:`core.Sampler.shard` gives each rank a disjoint, equal share.
"""

from __future__ import annotations

import numpy as np

from core import DatasetMeta, DataError, Sampler


class ClassBalanced(Sampler):
    def __init__(self, head: str | None = None) -> None:
        """``head``: the label head whose classes are balanced (default: the dataset's first)."""
        self.head = head
        self.members: list[np.ndarray] = []  # sample indices of each class that has samples

    def bind_meta(self, meta: DatasetMeta) -> None:
        if not meta.heads:
            raise ValueError(f"dataset '{meta.name}' has no label head to balance")
        if self.head is None:
            self.head = next(iter(meta.heads))
        elif self.head not in meta.heads:
            raise ValueError(f"dataset '{meta.name}' has no head '{self.head}' (its heads: {', '.join(meta.heads)})")
        self.needs = (self.head,)

    def bind(self, fields: dict[str, np.ndarray]) -> None:
        labels = np.asarray(fields[self.head]).reshape(-1)
        if labels.dtype.kind not in "iu":
            raise DataError(f"class_balanced: head '{self.head}' holds {labels.dtype} values, not class ids")
        order = np.argsort(labels, kind="stable")
        _, starts = np.unique(labels[order], return_index=True)
        self.members = np.split(order, starts[1:]) if len(order) else []

    def indices(self, n: int, *, epoch: int, seed: int, rank: int, world_size: int) -> np.ndarray:
        if sum(map(len, self.members)) != n:
            raise RuntimeError("class_balanced: the training split's labels were not bound before sampling")
        rng = np.random.default_rng((seed, epoch))
        k = len(self.members)
        shares = np.full(k, n // k)
        shares[rng.choice(k, n % k, replace=False)] += 1
        drawn = [_draw(rng, members, int(share)) for members, share in zip(self.members, shares)]
        return self.shard(rng.permutation(np.concatenate(drawn)), rank, world_size)


def _draw(rng: np.random.Generator, members: np.ndarray, share: int) -> np.ndarray:
    """``share`` of ``members``: without replacement when there are enough, else each ``share //
    len`` times and a random rest once more."""
    repeats, rest = divmod(share, len(members))
    return np.concatenate([np.tile(members, repeats), rng.choice(members, rest, replace=False)])
