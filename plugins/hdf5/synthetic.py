"""Synthetic recording sessions whose responses come from a known linear-nonlinear-Poisson model.

Each trial shows a grating (one of ``classes`` orientations: the trial's ``label``) at one
of a few contrasts, plus pixel noise. Each neuron has a Gabor receptive field ``w`` (its
position, orientation and frequency drawn at random), a bias ``b`` and a gain ``g``; its
rate for a frame ``x`` (pixels scaled to [-0.5, 0.5]) is ``RATE_SCALE * softplus(b + g * <w, x>)``
and its response is a Poisson draw of that rate. The gain makes each neuron's drive vary
with a standard deviation of 1 to 2 over trials, so rates vary a few-fold (an exponential
nonlinearity gave some neurons rates a million times their mean). The filters, biases and gains are stored in each
file (``true_filters``, ``true_bias``, ``true_gain``) with the noiseless ``true_rate``, so a
trained model can be checked against the model that made the data.

With ``frames`` > 0 the gratings drift (one phase step per frame) and each frame has its
own responses: ``stim`` N x T x H x W, ``responses`` N x T x neurons.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CONTRASTS = np.array([0.1, 0.25, 0.5, 1.0], dtype=np.float32)
MEAN_RATE = 2.0  # spikes per trial (per frame) at zero drive
RATE_SCALE = MEAN_RATE / np.log(2.0)  # softplus(0) = log 2


def gabors(rng: np.random.Generator, neurons: int, size: int) -> np.ndarray:
    """``neurons`` unit-norm Gabor filters (neurons x size x size) at random places, angles and frequencies."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    cx, cy = rng.uniform(-0.25, 0.25, (2, neurons, 1, 1)).astype(np.float32)
    theta = rng.uniform(0, np.pi, (neurons, 1, 1)).astype(np.float32)
    freq = rng.uniform(2.0, 5.0, (neurons, 1, 1)).astype(np.float32)
    sigma = rng.uniform(0.08, 0.15, (neurons, 1, 1)).astype(np.float32)
    u = (x - cx) * np.cos(theta) + (y - cy) * np.sin(theta)
    envelope = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))
    filters = envelope * np.cos(2 * np.pi * freq * u + rng.uniform(0, 2 * np.pi, (neurons, 1, 1)))
    return (filters / np.linalg.norm(filters.reshape(neurons, -1), axis=1)[:, None, None]).astype(np.float32)


def gratings(rng: np.random.Generator, labels: np.ndarray, contrast: np.ndarray, size: int, frames: int) -> np.ndarray:
    """uint8 frames (N x H x W, or N x T x H x W with ``frames``) of oriented gratings plus noise."""
    n, steps = len(labels), max(frames, 1)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    theta = (labels.astype(np.float32) * np.pi / (labels.max(initial=0) + 1))[:, None, None, None]
    freq = rng.uniform(2.0, 4.0, (n, 1, 1, 1)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1, 1)).astype(np.float32) + np.arange(steps, dtype=np.float32)[:, None, None] * 0.6
    u = x * np.cos(theta) + y * np.sin(theta)
    pattern = contrast[:, None, None, None] * 0.5 * np.sin(2 * np.pi * freq * u + phase)
    pattern += rng.normal(0, 0.05, pattern.shape).astype(np.float32)
    pixels = np.clip(np.rint((pattern + 0.5) * 255), 0, 255).astype(np.uint8)
    return pixels if frames else pixels[:, 0]


def lnp_rates(stim: np.ndarray, filters: np.ndarray, bias: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """The model's rates for uint8 frames (..., H, W): ``RATE_SCALE * softplus(bias + gain * <filter, pixels/255 - 0.5>)``."""
    frames = stim.reshape(-1, filters.shape[1] * filters.shape[2]).astype(np.float32) / 255.0 - 0.5
    drive = frames @ filters.reshape(len(filters), -1).T
    rates = RATE_SCALE * np.logaddexp(0.0, bias + gain * drive)
    return rates.reshape(*stim.shape[:-2], len(filters)).astype(np.float32)


def make_session(rng: np.random.Generator, trials: int, size: int, neurons: int, frames: int, classes: int) -> dict[str, np.ndarray]:
    """One session's datasets, ground truth included."""
    labels = rng.integers(0, classes, trials)
    contrast = CONTRASTS[rng.integers(0, len(CONTRASTS), trials)]
    stim = gratings(rng, labels, contrast, size, frames)
    filters = gabors(rng, neurons, size)
    # each neuron's drive <w, x> standardised over the first trials, then scaled by a gain of 1 to 2
    frames = stim[:200].reshape(-1, size * size).astype(np.float32) / 255.0 - 0.5
    drive = frames @ filters.reshape(neurons, -1).T
    scale = rng.uniform(1.0, 2.0, neurons).astype(np.float32)
    gain = (scale / drive.std(0).clip(1e-6)).astype(np.float32)
    bias = (rng.uniform(-0.5, 0.5, neurons) - gain * drive.mean(0)).astype(np.float32)
    rate = lnp_rates(stim, filters, bias, gain)
    return {
        "stim": stim,
        "responses": rng.poisson(rate).astype(np.float32),
        "contrast": contrast,
        "label": labels.astype(np.int64),
        "true_rate": rate,
        "true_filters": filters,
        "true_bias": bias,
        "true_gain": gain,
    }


def write_sessions(
    out: Path, sessions: int, trials: int, size: int, neurons: int, frames: int, classes: int, seed: int,
    chunk_rows: int, compression: str | None,
) -> list[Path]:
    """Write ``sessions`` files ``out/session_XX.h5``; returns their paths."""
    from plugins.hdf5.tool import create_file

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(sessions):
        data = make_session(np.random.default_rng([seed, index]), trials, size, neurons, frames, classes)
        path = out / f"session_{index:02d}.h5"
        with create_file(path) as f:
            f.attrs["session"] = path.stem
            f.attrs["label_classes"] = classes
            f.attrs["model"] = f"linear-nonlinear-Poisson: responses ~ Poisson({RATE_SCALE:.4f} * softplus(true_bias + true_gain * <true_filters, stim/255 - 0.5>))"
            for name, value in data.items():
                per_trial = name in ("stim", "responses", "contrast", "label", "true_rate")
                chunks = (min(chunk_rows, trials), *value.shape[1:]) if per_trial and chunk_rows else None
                f.create_dataset(name, data=value, chunks=chunks, compression=compression if chunks else None)
            if frames:
                f["stim"].attrs["axes"] = "NTHW"
        written.append(path)
    return written
