"""Losses and metrics for predicted neural responses.

The correlation of a neuron is computed over a whole evaluation epoch (not averaged over
batches): per dataset the sums of x, y, xy, x², y² and the count are accumulated per
neuron, summed across ranks, and turned into Pearson's r at the end. Neurons that never
vary in the epoch count as 0. Time steps (``(B, T, neurons)``) are samples like trials.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def response_loss(predicted: torch.Tensor, recorded: torch.Tensor, kind: str) -> torch.Tensor:
    """``poisson``: negative log-likelihood of counts under predicted rates (> 0); ``mse``."""
    predicted, recorded = predicted.float(), recorded.float()
    if kind == "mse":
        return F.mse_loss(predicted, recorded)
    return F.poisson_nll_loss(predicted, recorded, log_input=False, full=False, eps=1e-8)


class Correlations:
    """Per-dataset running sums for the mean per-neuron correlation."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}

    def reset(self) -> None:
        self.sums = {}

    def add(self, name: str, predicted: torch.Tensor, recorded: torch.Tensor) -> None:
        x = predicted.float().reshape(-1, predicted.shape[-1])
        y = recorded.float().reshape(-1, recorded.shape[-1])
        count = torch.full_like(x[0], len(x))
        sums = torch.stack([x.sum(0), y.sum(0), (x * y).sum(0), (x * x).sum(0), (y * y).sum(0), count])
        self.sums[name] = self.sums[name] + sums if name in self.sums else sums

    def compute(self, reduce: Callable[..., torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Mean correlation per dataset; ``reduce`` sums the statistics across ranks.

        Every rank must hold every dataset's entry before reducing (each rank sees every
        dataset in evaluation), so the collective calls line up."""
        out = {}
        for name in sorted(self.sums):
            sx, sy, sxy, sxx, syy, n = (reduce(self.sums[name], reduce_op="sum") if reduce else self.sums[name])
            cov = sxy / n - sx * sy / n**2
            var = (sxx / n - (sx / n) ** 2).clamp(min=0) * (syy / n - (sy / n) ** 2).clamp(min=0)
            r = torch.where(var > 1e-12, cov / var.clamp(min=1e-12).sqrt(), torch.zeros_like(cov))
            out[name] = r.mean()
        return out
