"""Learning-rate schedules the ``optim`` section names (beside torch's own)."""

from __future__ import annotations

import math

import torch


def linear_warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                         floor: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear from 0 to the base rate over ``warmup_steps``, then a cosine down to
    ``floor`` x the base rate at ``total_steps`` (and ``floor`` after). Stepped per batch."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
