"""Augmentations on the device, per batch, training only: ``random_flip``, ``random_translate``."""

from core import hookimpl


@hookimpl
def core_transforms() -> dict[str, str]:
    return {
        "random_flip": "plugins.augment.transforms:RandomFlip",
        "random_translate": "plugins.augment.transforms:RandomTranslate",
    }
