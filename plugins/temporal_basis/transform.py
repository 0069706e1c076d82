r"""Raised-cosine temporal basis: filters each pixel's time course with K smooth bumps.

A compact description of stimulus history, as in GLMs of neural responses (Pillow et al.,
2008). With K = ``num_cosine_funcs`` bumps over lags :math:`s = 0 \dots L-1` (``length``,
default: the stimulus's T), centres :math:`c_k = k\,\Delta` and spacing
:math:`\Delta = (L - 1)/(K - 1)`:

.. math::

    b_k(s) = \tfrac12\big(1 + \cos(\pi (s - c_k)/\Delta)\big) \text{ if } |s - c_k| < \Delta
    \text{ else } 0, \qquad
    y_k(t) = \sum_{s=0}^{L-1} b_k(s)\, x(t - s)

(causal; :math:`x(t) = 0` before the first step). Adjacent bumps overlap by half and sum to
one, so no lag is over- or under-weighted. The output adds a basis axis ``K`` just before
the time axis ``T`` (``THW`` -> ``KTHW``): K times the values, so store it as bfloat16.
Runs at preparation only.
"""

from __future__ import annotations

import math

import torch

from core import PREPARE, Batch, Layout, Transform


def raised_cosines(num: int, length: int) -> torch.Tensor:
    """The (num, length) basis :math:`b_k(s)`."""
    lags = torch.arange(length, dtype=torch.float64)
    if num == 1:
        return torch.ones(1, length, dtype=torch.float64)
    spacing = (length - 1) / (num - 1)
    centres = torch.arange(num, dtype=torch.float64)[:, None] * spacing
    phase = (lags[None, :] - centres) / spacing
    return torch.where(phase.abs() < 1, 0.5 * (1 + torch.cos(math.pi * phase)), torch.zeros(()))


class TemporalBasis(Transform):
    """Each pixel's time course filtered by K raised-cosine bumps over its recent lags: a new
    axis ``K`` before ``T`` (at preparation only).

    ``num_cosine_funcs``: K, the number of bumps and the size of the new axis (>= 1; 1 is a
    flat window over every lag).
    ``length``: L, the lags the bumps span, in time steps (>= 2; by default, and at most, the
    stimulus's T)."""

    stages = frozenset({PREPARE})

    def __init__(self, num_cosine_funcs: int = 10, length: int | None = None) -> None:
        if num_cosine_funcs < 1:
            raise ValueError(f"num_cosine_funcs must be at least 1, not {num_cosine_funcs}")
        if length is not None and length < 2:
            raise ValueError(f"length must be at least 2, not {length}")
        self.num, self.length = num_cosine_funcs, length
        self.time_axis = 0  # within one sample; set from the layout by output_layout


    def output_layout(self, layout: Layout) -> Layout:
        if "T" not in layout.axes:
            raise ValueError(
                f"temporal_basis filters a time axis, but the stim has none: axes {layout.axes}, shape {layout.shape} "
                "(use data with a time axis, e.g. a session of N x T x H x W)"
            )
        t = self.time_axis = layout.axes.index("T")
        return Layout(layout.shape[:t] + (self.num,) + layout.shape[t:], layout.axes[:t] + "K" + layout.axes[t:])

    def filters(self, steps: int) -> torch.Tensor:
        """(K, T, T) matrices: ``y_k = filters[k] @ x`` over the time axis."""
        length = min(self.length or steps, steps)
        basis = raised_cosines(self.num, length)
        lag = torch.arange(steps)[:, None] - torch.arange(steps)[None, :]  # t - u
        valid = (lag >= 0) & (lag < length)
        return torch.where(valid, basis[:, lag.clamp(0, length - 1)], torch.zeros(())).float()

    def __call__(self, batch: Batch) -> Batch:
        stim = batch["stim"].float()
        axis = self.time_axis + 1  # after the batch axis
        moved = stim.movedim(axis, -1)  # (..., T)
        out = torch.einsum("...u,ktu->...kt", moved, self.filters(stim.shape[axis]).to(stim.device))
        return {**batch, "stim": out.movedim(-2, axis).movedim(-1, axis + 1)}
