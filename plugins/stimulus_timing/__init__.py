"""Stimulus timing on the device: ``repeat``, ``stimulus_duration``, ``stimulus_interval``,
``stimulus_contrast``. Each turns a batch of images (B, C, H, W) into a presentation over
time (B, T, C, H, W) on the accelerator, with ``stim_on`` and per-step labels."""

from core import hookimpl


@hookimpl
def core_transforms() -> dict[str, str]:
    module = "plugins.stimulus_timing.schedules"
    return {
        "repeat": f"{module}:Repeat",
        "stimulus_duration": f"{module}:StimulusDuration",
        "stimulus_interval": f"{module}:StimulusInterval",
        "stimulus_contrast": f"{module}:StimulusContrast",
    }
