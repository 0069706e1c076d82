"""Sampler ``contrast_weighted``: a curriculum from high-contrast trials to all trials."""

from core import hookimpl


@hookimpl
def core_samplers() -> dict[str, str]:
    return {"contrast_weighted": "plugins.curriculum.sampler:ContrastWeighted"}
