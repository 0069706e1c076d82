"""Contrast-weighted sampling with a schedule over training steps.

A trial of contrast ``c`` is drawn with weight ``max(c, min_contrast) ** e``, where the
exponent ``e`` falls from ``start_exponent`` (high-contrast trials dominate) to 0 (uniform)
over ``ramp_steps`` optimiser steps, linearly or along a half cosine (``schedule``). The
core's ``SamplerClock`` callback sets the step before every batch; an epoch's indices are
drawn when the epoch starts, so the weights follow the schedule epoch by epoch.

Distributed: the (seed, epoch) permutation of all indices is dealt round-robin to the
ranks, and each rank draws ``ceil(n / world_size)`` indices, with replacement and by
weight, from its own share only: ranks never share an index and all draw as many.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from core import DataError, Sampler


class ContrastWeighted(Sampler):
    """Draws training trials weighted by their ``contrast`` field, from high-contrast trials
    first to uniform after ``ramp_steps`` optimiser steps.

    ``start_exponent``: the weighting exponent at step 0 (>= 0; larger favours high-contrast
    trials more, 0 draws uniformly from the start).
    ``ramp_steps``: the optimiser steps over which the exponent falls to 0, after which every
    trial is equally likely (>= 1).
    ``schedule``: how the exponent falls, ``linear`` or ``cosine`` (a half cosine: slow at
    the start and the end).
    ``min_contrast``: the floor under each trial's contrast before weighting, in (0, 1], so
    trials of contrast 0 are still drawn."""

    needs = ("contrast",)

    def __init__(self, start_exponent: float = 2.0, ramp_steps: int = 1000,
                 schedule: Literal["linear", "cosine"] = "linear", min_contrast: float = 0.01) -> None:
        if start_exponent < 0 or ramp_steps < 1 or not 0 < min_contrast <= 1:
            raise ValueError("start_exponent must be >= 0, ramp_steps >= 1 and min_contrast in (0, 1]")
        self.start_exponent, self.ramp_steps, self.schedule, self.min_contrast = (
            start_exponent, ramp_steps, schedule, min_contrast)
        self.contrast: np.ndarray | None = None
        self.step = 0

    def bind(self, fields: dict[str, np.ndarray]) -> None:
        contrast = np.asarray(fields["contrast"], dtype=np.float64).reshape(-1)
        bad = ~np.isfinite(contrast)
        if bad.any():  # NaN weights would fail every draw (numpy: "probabilities contain NaN"), at every step
            first = int(np.argmax(bad))
            raise DataError(f"contrast_weighted: the training split's contrast holds {contrast[first]!s} at training sample "
                            f"{first} ({int(bad.sum())} non-finite value(s) of {len(contrast)}); the sampler weights "
                            "trials by contrast, so every value must be a finite number: fix or remove those trials "
                            "(core-data validate names the file and trial), or use data.sampler: random")
        self.contrast = np.maximum(contrast, self.min_contrast)

    def set_step(self, step: int) -> None:
        self.step = step

    def exponent(self, step: int) -> float:
        """The weighting exponent at ``step``: ``start_exponent`` at 0, 0 from ``ramp_steps`` on."""
        progress = min(1.0, step / self.ramp_steps)
        if self.schedule == "cosine":
            progress = 0.5 * (1 - math.cos(math.pi * progress))
        return self.start_exponent * (1 - progress)

    def indices(self, n: int, *, epoch: int, seed: int, rank: int, world_size: int) -> np.ndarray:
        if self.contrast is None or len(self.contrast) != n:
            raise RuntimeError("contrast_weighted: the training split's contrast was not bound before sampling")
        share = np.random.default_rng((seed, epoch)).permutation(n)[rank::world_size]
        weights = self.contrast[share] ** self.exponent(self.step)
        count = -(-n // world_size)
        rng = np.random.default_rng((seed, epoch, rank))
        return share[rng.choice(len(share), size=count, replace=True, p=weights / weights.sum())]
