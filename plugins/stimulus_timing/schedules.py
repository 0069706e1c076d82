"""Presentation schedules built on the device: the time axis never exists on the host.

Each schedule is a boolean ``on`` vector over ``n_timesteps`` steps and a contrast. A batch
``stim`` (B, C, H, W), already normalised on the device, becomes

    stim_t[b, t] = void + contrast * (stim[b] - void)   where on[t]
    stim_t[b, t] = void                                  elsewhere

built with one broadcasted ``torch.where`` into a fresh tensor per batch (never a buffer
that a later batch overwrites). The batch also gets ``stim_on`` (B, T) and, for every
integer label of shape (B,), per-step labels (B, T) holding ``void_label`` on void steps.

Schedules (``intro`` = ``intro_duration``, ``dur`` = ``stimulus_duration``):
- ``repeat``: on at every step;
- ``stimulus_duration``: void for ``intro`` steps, on for ``dur``, void after;
- ``stimulus_interval``: ``intro`` void, ``dur`` on, ``interval_duration`` void, ``dur`` on, void after;
- ``stimulus_contrast``: as ``stimulus_duration``, the stimulus scaled toward ``void_value``.
"""

from __future__ import annotations

import torch

from core import DEVICE, Batch, Layout, Transform


class Schedule(Transform):
    stages = frozenset({DEVICE})
    contrast: float = 1.0

    def __init__(self, n_timesteps: int, void_value: float = 0.0, void_label: int = -1) -> None:
        if n_timesteps < 1:
            raise ValueError(f"n_timesteps must be at least 1, not {n_timesteps}")
        self.n_timesteps, self.void_value, self.void_label = n_timesteps, void_value, void_label

    def on(self) -> torch.Tensor:
        """(T,) bool: where the stimulus is shown."""
        return torch.ones(self.n_timesteps, dtype=torch.bool)

    def _presentations(self, duration: int, starts: list[int]) -> torch.Tensor:
        on = torch.zeros(self.n_timesteps, dtype=torch.bool)
        for start in starts:
            on[start : start + duration] = True
        return on

    def output_layout(self, layout: Layout) -> Layout:
        if "T" in layout.axes:
            raise ValueError(
                f"{type(self).__name__} builds the time axis, but the stim already has one ({layout.axes} {layout.shape}); "
                "list one timing transform, after the per-image transforms"
            )
        return Layout((self.n_timesteps, *layout.shape), "T" + layout.axes)

    def mask(self, device: torch.device) -> torch.Tensor:
        """``on()`` on ``device``, made once per device (no host-to-device copy per batch)."""
        cache = self.__dict__.setdefault("_masks", {})
        if device not in cache:
            cache[device] = self.on().to(device)
        return cache[device]

    def __call__(self, batch: Batch) -> Batch:
        stim = batch["stim"]
        n = len(stim)
        on = self.mask(stim.device)
        shown = stim if self.contrast == 1.0 else self.void_value + self.contrast * (stim - self.void_value)
        mask = on.view(1, -1, *([1] * (stim.dim() - 1)))
        out: Batch = {**batch, "stim": torch.where(mask, shown.unsqueeze(1), self.void_value), "stim_on": on.expand(n, -1).clone()}
        for key, value in batch.items():
            if key != "stim" and torch.is_tensor(value) and value.dim() == 1 and len(value) == n and not value.is_floating_point():
                out[key] = torch.where(on, value.unsqueeze(1), self.void_label)
        return out


class Repeat(Schedule):
    """The image at every step.

    ``n_timesteps``: the length T of the presentation, in steps (>= 1).
    ``void_value``: the stim value of void steps, in the units of the normalised stim (0 is
    pixelnorm's mid-grey).
    ``void_label``: the value integer labels take on void steps in their per-step (B, T) form."""

    def __init__(self, n_timesteps: int = 20, void_value: float = 0.0, void_label: int = -1) -> None:
        super().__init__(n_timesteps, void_value, void_label)


class StimulusDuration(Schedule):
    """Void for ``intro_duration`` steps, the stimulus for ``stimulus_duration``, void after.

    ``n_timesteps``: the length T of the presentation, in steps (>= 1; the schedule must fit in it).
    ``stimulus_duration``: the steps the presentation lasts (>= 1).
    ``intro_duration``: the void steps before the presentation (>= 0).
    ``void_value``: the stim value of void steps, in the units of the normalised stim (0 is
    pixelnorm's mid-grey).
    ``void_label``: the value integer labels take on void steps in their per-step (B, T) form."""

    def __init__(self, n_timesteps: int = 20, stimulus_duration: int = 10, intro_duration: int = 2,
                 void_value: float = 0.0, void_label: int = -1) -> None:
        super().__init__(n_timesteps, void_value, void_label)
        _check(stimulus_duration=(stimulus_duration, 1), intro_duration=(intro_duration, 0))
        self.duration, self.intro = stimulus_duration, intro_duration
        _fits(n_timesteps, intro_duration=intro_duration, stimulus_duration=stimulus_duration)

    def on(self) -> torch.Tensor:
        return self._presentations(self.duration, [self.intro])


class StimulusInterval(Schedule):
    """Two presentations of ``stimulus_duration`` steps separated by ``interval_duration`` void steps.

    ``n_timesteps``: the length T of the presentation, in steps (>= 1; the schedule must fit in it).
    ``stimulus_duration``: the steps each presentation lasts (>= 1).
    ``intro_duration``: the void steps before the first presentation (>= 0).
    ``interval_duration``: the void steps between the two presentations (>= 1).
    ``void_value``: the stim value of void steps, in the units of the normalised stim (0 is
    pixelnorm's mid-grey).
    ``void_label``: the value integer labels take on void steps in their per-step (B, T) form."""

    def __init__(self, n_timesteps: int = 20, stimulus_duration: int = 3, intro_duration: int = 2,
                 interval_duration: int = 5, void_value: float = 0.0, void_label: int = -1) -> None:
        super().__init__(n_timesteps, void_value, void_label)
        _check(stimulus_duration=(stimulus_duration, 1), intro_duration=(intro_duration, 0),
               interval_duration=(interval_duration, 1))
        self.duration, self.intro, self.interval = stimulus_duration, intro_duration, interval_duration
        _fits(n_timesteps, intro_duration=intro_duration, stimulus_duration=stimulus_duration,
              interval_duration=interval_duration, second_stimulus_duration=stimulus_duration)

    def on(self) -> torch.Tensor:
        return self._presentations(self.duration, [self.intro, self.intro + self.duration + self.interval])


class StimulusContrast(StimulusDuration):
    """``stimulus_duration``'s schedule with the stimulus scaled toward ``void_value`` by
    ``stimulus_contrast`` (1: unchanged, 0: only the void value).

    ``n_timesteps``: the length T of the presentation, in steps (>= 1; the schedule must fit in it).
    ``stimulus_duration``: the steps the presentation lasts (>= 1).
    ``intro_duration``: the void steps before the presentation (>= 0).
    ``stimulus_contrast``: the share of the stimulus's difference from ``void_value`` that is
    shown, in [0, 1].
    ``void_value``: the stim value of void steps, in the units of the normalised stim (0 is
    pixelnorm's mid-grey).
    ``void_label``: the value integer labels take on void steps in their per-step (B, T) form."""

    def __init__(self, n_timesteps: int = 20, stimulus_duration: int = 10, intro_duration: int = 2,
                 stimulus_contrast: float = 1.0, void_value: float = 0.0, void_label: int = -1) -> None:
        super().__init__(n_timesteps, stimulus_duration, intro_duration, void_value, void_label)
        if not 0.0 <= stimulus_contrast <= 1.0:
            raise ValueError(f"stimulus_contrast must be in [0, 1], not {stimulus_contrast}")
        self.contrast = stimulus_contrast


def _check(**values: tuple[int, int]) -> None:
    for name, (value, least) in values.items():
        if value < least:
            raise ValueError(f"{name} must be at least {least}, not {value}")


def _fits(n_timesteps: int, **parts: int) -> None:
    total = sum(parts.values())
    if total > n_timesteps:
        terms = " + ".join(f"{name} {value}" for name, value in parts.items())
        raise ValueError(f"the schedule does not fit: {terms} = {total} steps > n_timesteps {n_timesteps}")
