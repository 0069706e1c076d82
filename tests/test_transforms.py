"""Each transform against a direct NumPy reference, and its declared layout."""

import numpy as np
import pytest
import torch

from core import DEVICE, PREPARE, Layout
from plugins.augment.transforms import RandomFlip, RandomTranslate
from plugins.temporal_basis.transform import TemporalBasis, raised_cosines
from plugins.whitening.transform import FFTWhitening


def whiten_reference(x: np.ndarray, f_0: float, n: float) -> np.ndarray:
    fy = np.fft.fftfreq(x.shape[-2])[:, None]
    fx = np.fft.fftfreq(x.shape[-1])[None, :]
    r = np.sqrt(fx**2 + fy**2)
    w = r * np.exp(-((r / f_0) ** n))
    return np.real(np.fft.ifft2(np.fft.fft2(x) * w))


@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (2, 5, 9, 12)])
def test_fftwhitening_matches_numpy(shape):
    x = np.random.default_rng(0).uniform(-0.5, 0.5, size=shape).astype(np.float32)
    out = FFTWhitening(f_0=0.3, n=3)({"stim": torch.from_numpy(x)})["stim"]
    np.testing.assert_allclose(out.numpy(), whiten_reference(x.astype(np.float64), 0.3, 3), atol=1e-5)
    assert np.abs(out.numpy().mean(axis=(-2, -1))).max() < 1e-5  # W(0) = 0 removes each frame's mean
    assert FFTWhitening.stages == {PREPARE}


def test_fftwhitening_layout():
    assert FFTWhitening().output_layout(Layout((3, 8, 8), "CHW")) == Layout((3, 8, 8), "CHW")
    with pytest.raises(ValueError, match="filters \\(H, W\\) frames"):
        FFTWhitening().output_layout(Layout((8, 3), "HC"))


def temporal_reference(x: np.ndarray, num: int, length: int) -> np.ndarray:
    """x: (N, T, H, W) -> (N, K, T, H, W), a direct causal convolution loop."""
    basis = np.zeros((num, length))
    spacing = (length - 1) / (num - 1)
    for k in range(num):
        for s in range(length):
            phase = (s - k * spacing) / spacing
            basis[k, s] = 0.5 * (1 + np.cos(np.pi * phase)) if abs(phase) < 1 else 0.0
    n, steps = x.shape[:2]
    out = np.zeros((n, num, steps, *x.shape[2:]))
    for k in range(num):
        for t in range(steps):
            for s in range(min(length, t + 1)):
                out[:, k, t] += basis[k, s] * x[:, t - s]
    return out


def test_temporal_basis_matches_a_direct_convolution():
    x = np.random.default_rng(1).normal(size=(2, 7, 3, 4)).astype(np.float32)
    transform = TemporalBasis(num_cosine_funcs=3, length=5)
    assert transform.output_layout(Layout((7, 3, 4), "THW")) == Layout((3, 7, 3, 4), "KTHW")
    out = transform({"stim": torch.from_numpy(x)})["stim"]
    assert out.shape == (2, 3, 7, 3, 4)
    np.testing.assert_allclose(out.numpy(), temporal_reference(x.astype(np.float64), 3, 5), atol=1e-5)


def test_temporal_basis_time_axis_after_channels_and_partition_of_unity():
    transform = TemporalBasis(num_cosine_funcs=4)
    assert transform.output_layout(Layout((2, 6, 5, 5), "CTHW")) == Layout((2, 4, 6, 5, 5), "CKTHW")
    x = torch.randn(3, 2, 6, 5, 5)
    out = transform({"stim": x})["stim"]
    assert out.shape == (3, 2, 4, 6, 5, 5)
    expected = torch.from_numpy(temporal_reference(x[:, 1].double().numpy(), 4, 6)).float()
    torch.testing.assert_close(out[:, 1], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(raised_cosines(4, 10).sum(0), torch.ones(10, dtype=torch.float64))


def test_temporal_basis_needs_a_time_axis():
    with pytest.raises(ValueError, match="filters a time axis, but the stim has none: axes CHW"):
        TemporalBasis().output_layout(Layout((3, 32, 32), "CHW"))


def test_random_flip_mirrors_whole_samples():
    torch.manual_seed(0)
    x = torch.randn(64, 3, 5, 6)
    out = RandomFlip()({"stim": x})["stim"]
    flipped = [bool(torch.equal(o, s.flip(-1))) for o, s in zip(out, x)]
    kept = [bool(torch.equal(o, s)) for o, s in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept)) and 10 < sum(flipped) < 54
    assert RandomFlip.stages == {DEVICE} and RandomFlip.train_only


def test_random_translate_is_a_zero_filled_shift_per_sample():
    torch.manual_seed(0)
    x = torch.randn(32, 3, 8, 8) + 10  # no zeros in the input
    out = RandomTranslate(pixels=2)({"stim": x})["stim"]
    shifts = set()
    for o, s in zip(out.numpy(), x.numpy()):
        padded = np.pad(s, ((0, 0), (2, 2), (2, 2)))
        match = [(dy, dx) for dy in range(5) for dx in range(5) if np.array_equal(padded[:, dy:dy + 8, dx:dx + 8], o)]
        assert match, "each output is the input shifted by at most 2 pixels"
        shifts.add(match[0])
    assert len(shifts) > 5
