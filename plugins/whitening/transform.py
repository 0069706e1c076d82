r"""Radial whitening in the Fourier domain (Olshausen & Field, 1997), applied per frame.

Natural images have an amplitude spectrum falling as :math:`1/f`; multiplying by
:math:`f` flattens it (whitens), and a low-pass envelope stops the noise at the highest
frequencies from being amplified. For each frame (the last two axes, H and W):

.. math::

    \hat y(f_x, f_y) = \hat x(f_x, f_y)\, W(r), \qquad
    W(r) = r \exp\!\big(-(r / f_0)^{n}\big), \qquad r = \sqrt{f_x^2 + f_y^2}

with :math:`f_x, f_y` in cycles per pixel (``numpy.fft.fftfreq``: -0.5 ... 0.5), and
:math:`y` the real part of the inverse 2-D FFT. :math:`W(0) = 0`, so each frame's mean is
removed. ``f_0`` (default 0.4 cycles/pixel, the seed's value) sets the cut-off, ``n``
(default 4) its steepness. Runs at preparation only (per frame FFTs over the whole
dataset once; far too costly per batch).
"""

from __future__ import annotations

import torch

from core import PREPARE, Batch, Layout, Transform


class FFTWhitening(Transform):
    """Each (H, W) frame's spectrum multiplied by ``r * exp(-(r / f_0) ** n)``: whitened, with
    the highest frequencies damped and the mean removed (at preparation only).

    ``f_0``: the cut-off frequency of the low-pass envelope, in cycles per pixel (> 0; the
    frequencies run up to 0.5).
    ``n``: the exponent of the envelope, its steepness around ``f_0`` (> 0; larger is
    sharper)."""

    stages = frozenset({PREPARE})

    def __init__(self, f_0: float = 0.4, n: float = 4.0) -> None:
        if f_0 <= 0 or n <= 0:
            raise ValueError(f"f_0 ({f_0}) and n ({n}) must be positive")
        self.f_0, self.n = f_0, n
        self._filters: dict[tuple[int, int], torch.Tensor] = {}

    def output_layout(self, layout: Layout) -> Layout:
        if not layout.axes.endswith("HW"):
            raise ValueError(f"fftwhitening filters (H, W) frames; the stim's axes are {layout.axes} {layout.shape}")
        return layout

    def filter(self, height: int, width: int) -> torch.Tensor:
        """``W(r)`` on the ``rfft2`` grid of an ``height`` x ``width`` frame."""
        key = (height, width)
        if key not in self._filters:
            fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
            fx = torch.fft.rfftfreq(width, dtype=torch.float64)[None, :]
            r = torch.sqrt(fx**2 + fy**2)
            self._filters[key] = (r * torch.exp(-((r / self.f_0) ** self.n))).float()
        return self._filters[key]

    def __call__(self, batch: Batch) -> Batch:
        stim = batch["stim"].float()
        height, width = stim.shape[-2:]
        spectrum = torch.fft.rfft2(stim) * self.filter(height, width).to(stim.device)
        return {**batch, "stim": torch.fft.irfft2(spectrum, s=(height, width))}
