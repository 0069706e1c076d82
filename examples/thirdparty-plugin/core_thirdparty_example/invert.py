"""Contrast inversion of normalised stimuli, per batch on the device."""

from __future__ import annotations

from core import DEVICE, Batch, Transform


class Invert(Transform):
    """Inverts the contrast of normalised stimuli: ``stim -> -gain * stim``.

    ``gain``: the factor applied after the sign flip (above 0; 1 keeps the contrast)."""

    stages = frozenset({DEVICE})

    def __init__(self, gain: float = 1.0) -> None:
        if gain <= 0:
            raise ValueError(f"gain must be above 0, not {gain}")
        self.gain = gain

    def __call__(self, batch: Batch) -> Batch:
        return {**batch, "stim": -self.gain * batch["stim"]}
