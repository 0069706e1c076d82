"""Contrast inversion of normalised stimuli, per batch on the device."""

from __future__ import annotations

from core import DEVICE, Batch, Transform


class Invert(Transform):
    stages = frozenset({DEVICE})

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = gain

    def __call__(self, batch: Batch) -> Batch:
        return {**batch, "stim": -self.gain * batch["stim"]}
