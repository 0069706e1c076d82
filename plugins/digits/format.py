"""The 1,797 handwritten digits (8x8, 17 grey levels) that scikit-learn ships on disk.

Real data with no download: the quickstart and the end-to-end tests train on it. Pixels are
scaled from 0..16 to 0..255 uint8; ``image_size`` upsamples (bilinear) and ``channels``
repeats the grey plane, so ``{image_size: 32, channels: 3}`` gives CIFAR-shaped samples.
The train/val/test split is a fixed permutation of ``split_seed``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from core import DataFormat, DatasetMeta, Split

N_SAMPLES = 1797
HEAD_CLASSES = {"digit": 10, "parity": 2}


class Digits(DataFormat):
    """scikit-learn's 1,797 handwritten digits as uint8 images, split by a fixed permutation.

    ``image_size``: the side of the square images in pixels (>= 8; above 8, bilinear
    upsampling).
    ``channels``: 1 (grey) or 3 (the grey plane repeated).
    ``heads``: the label heads, ``digit`` (10 classes) and/or ``parity`` (2 classes: 0 even,
    1 odd).
    ``val_fraction``: the share of the samples in the ``val`` split (above 0; with
    ``test_fraction``, the sum must stay below 1).
    ``test_fraction``: the share of the samples in the ``test`` split (above 0).
    ``split_seed``: the seed of the permutation that deals the samples to the splits."""

    def __init__(
        self,
        image_size: int = 8,
        channels: Literal[1, 3] = 1,
        heads: list[Literal["digit", "parity"]] = ["digit"],  # noqa: B006 (validated, never mutated)
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
    ) -> None:
        if image_size < 8:
            raise ValueError(f"image_size {image_size} is below the native 8 pixels")
        if not heads:
            raise ValueError("heads is empty; name at least one of 'digit', 'parity'")
        if not (0 < val_fraction and 0 < test_fraction and val_fraction + test_fraction < 1):
            raise ValueError(f"val_fraction {val_fraction} and test_fraction {test_fraction} must be > 0 and sum below 1")
        if split_seed < 0:
            raise ValueError(f"split_seed must be at least 0, not {split_seed}")
        self.image_size, self.channels, self.heads = image_size, channels, list(dict.fromkeys(heads))
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        empty = [split for split, (start, stop) in self._bounds().items() if start == stop]
        if empty:
            raise ValueError(f"val_fraction {val_fraction} and test_fraction {test_fraction} leave the {empty[0]} split "
                             f"of the {N_SAMPLES:,} samples empty; each fraction must be at least {1 / N_SAMPLES:.5f}")

    def _bounds(self) -> dict[str, tuple[int, int]]:
        n_test = round(N_SAMPLES * self.test_fraction)
        n_val = round(N_SAMPLES * self.val_fraction)
        n_train = N_SAMPLES - n_val - n_test
        return {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, N_SAMPLES)}

    def meta(self) -> DatasetMeta:
        return DatasetMeta(
            name="digits",
            stim_shape=(self.channels, self.image_size, self.image_size),
            heads={head: HEAD_CLASSES[head] for head in self.heads},
            split_sizes={split: stop - start for split, (start, stop) in self._bounds().items()},
        )

    def _index(self, split: str) -> np.ndarray:
        start, stop = self._bounds()[split]
        return np.random.default_rng(self.split_seed).permutation(N_SAMPLES)[start:stop]

    def labels(self, split: str) -> dict[str, np.ndarray]:
        from sklearn.datasets import load_digits

        target = load_digits().target.astype(np.int64)[self._index(split)]
        return {head: {"digit": target, "parity": target % 2}[head] for head in self.heads}

    def open(self, split: str) -> Split:
        from sklearn.datasets import load_digits

        images = load_digits().images
        assert len(images) == N_SAMPLES, f"scikit-learn's digits changed size: {len(images)}"
        stim = _to_uint8(images[self._index(split)], self.image_size, self.channels)
        return Split({"stim": stim, **self.labels(split)})


def _to_uint8(images: np.ndarray, size: int, channels: int) -> np.ndarray:
    """(N, 8, 8) grey levels 0..16 -> (N, channels, size, size) uint8 0..255."""
    pixels = images.astype(np.float32) * (255.0 / 16.0)
    if size != images.shape[-1]:
        import torch

        pixels = torch.nn.functional.interpolate(
            torch.from_numpy(pixels)[:, None], size=(size, size), mode="bilinear", align_corners=False
        )[:, 0].numpy()
    pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(pixels[:, None], channels, axis=1))
