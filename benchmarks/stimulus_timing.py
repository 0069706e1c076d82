"""Stimulus timing built on the device against the host-side (B, T, C, H, W) buffer it replaced.

For B = 256 images of (3, 32, 32), T in (20, 30, 100) and the schedules

  duration  ``StimulusDuration(T, stimulus_duration=T//2, intro_duration=2)``
  interval  ``StimulusInterval(T, stimulus_duration=T//4, intro_duration=2, interval_duration=T//5)``
  contrast  ``StimulusContrast(T, stimulus_duration=T//2, intro_duration=2, stimulus_contrast=0.5)``

it times, per batch (median of ``--repeats`` after 3 warm-up batches), from the same uint8
batch (B, C, H, W) and int64 labels (B,):

  ours  the project path: uint8 -> ``PixelNorm()`` ((x - 127) / 255, float32) -> the schedule
        transform, which builds the time axis, ``stim_on`` and per-step labels. There is no
        GPU here, so the "device" is the CPU: only the uint8 batch crosses to it;
  host  what the replaced loaders did: a preallocated float32 (B, T, C, H, W) host buffer,
        filled sample by sample and time step by time step in NumPy, per-step labels
        likewise, then "transferred" (``torch.from_numpy(buf).clone()`` stands for the copy).

Outputs are checked equal (allclose, labels exact). Reported per (schedule, T): bytes that
cross host -> device per batch, bytes of the stim output, ms per batch, host / ours. Then
one training step of ``RecurrentCNN`` (GRU, head ``digit``: 10) per T, forward + masked
cross-entropy on the stimulus steps + backward + Adam step on the same batch (median of
``--train-repeats`` after one warm-up), and the schedule's time as a percent of it. For
scale, "fill ms" is the floor for any fresh output: ``torch.empty(B, T, C, H, W).fill_(0)``.
Targets: host bytes independent of T, >= 10x faster at T = 100, < 2 % of a training step.
On a CPU the schedule is a memory-bound write of B*T*C*H*W*4 bytes, so read the ratio
with that in mind. Run from any directory:

    .venv/bin/python benchmarks/stimulus_timing.py [--repeats 20] [--train-repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import DatasetMeta  # noqa: E402
from plugins.pixelnorm.transform import PixelNorm  # noqa: E402
from plugins.recurrent_cnn.model import RecurrentCNN  # noqa: E402
from plugins.stimulus_timing.schedules import StimulusContrast, StimulusDuration, StimulusInterval  # noqa: E402

B, C, H, W = 256, 3, 32, 32
STEPS = (20, 30, 100)
SCHEDULES = {
    "duration": lambda t: StimulusDuration(t, stimulus_duration=t // 2, intro_duration=2),
    "interval": lambda t: StimulusInterval(t, stimulus_duration=t // 4, intro_duration=2, interval_duration=t // 5),
    "contrast": lambda t: StimulusContrast(t, stimulus_duration=t // 2, intro_duration=2, stimulus_contrast=0.5),
}


def ours(schedule, norm, images: torch.Tensor, labels: torch.Tensor) -> dict:
    return schedule(norm({"stim": images.float(), "digit": labels}))


def host(buf: np.ndarray, lab: np.ndarray, on: list[bool], contrast: float, void: float, void_label: int,
         images: np.ndarray, labels: np.ndarray) -> dict:
    for b in range(len(images)):
        x = (images[b].astype(np.float32) - np.float32(127.0)) / np.float32(255.0)
        if contrast != 1.0:
            x = np.float32(void) + np.float32(contrast) * (x - np.float32(void))
        for t, shown in enumerate(on):
            buf[b, t] = x if shown else void
            lab[b, t] = labels[b] if shown else void_label
    return {"stim": torch.from_numpy(buf).clone(), "digit": torch.from_numpy(lab).clone(),
            "stim_on": torch.tensor(on).expand(len(images), -1).clone()}


def median_ms(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def train_step_ms(t: int, batch: dict, repeats: int) -> float:
    meta = DatasetMeta(name="bench", stim_shape=(t, C, H, W), heads={"digit": 10}, split_sizes={}, stim_axes="TCHW")
    model = RecurrentCNN(meta)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    on, target = batch["stim_on"], batch["digit"]

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        logits = model(batch)["digit"]
        loss = F.cross_entropy(logits[on], target[on], ignore_index=-1)
        loss.backward()
        optimizer.step()

    return median_ms(step, repeats, warmup=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--train-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    images_np = rng.integers(0, 256, size=(B, C, H, W), dtype=np.uint8)
    labels_np = rng.integers(0, 10, size=B).astype(np.int64)
    images, labels = torch.from_numpy(images_np), torch.from_numpy(labels_np)
    norm = PixelNorm()
    rows, ours_ms = [], {}
    for t in STEPS:
        buf = np.empty((B, t, C, H, W), dtype=np.float32)  # the replaced loaders' reused host buffer
        lab = np.empty((B, t), dtype=np.int64)
        for name, make in SCHEDULES.items():
            schedule = make(t)
            on = schedule.on().tolist()
            args_host = (buf, lab, on, schedule.contrast, schedule.void_value, schedule.void_label, images_np, labels_np)
            a, b = ours(schedule, norm, images, labels), host(*args_host)
            assert a["stim"].shape == b["stim"].shape == (B, t, C, H, W)
            assert torch.allclose(a["stim"], b["stim"], rtol=1e-6, atol=1e-7), f"{name} T={t}: stim differs"
            assert torch.equal(a["digit"], b["digit"]) and torch.equal(a["stim_on"], b["stim_on"]), f"{name} T={t}: labels differ"
            out_bytes = a["stim"].nbytes
            del a, b
            ms_ours = median_ms(lambda: ours(schedule, norm, images, labels), args.repeats)
            ms_host = median_ms(lambda: host(*args_host), args.repeats)
            ours_ms[name, t] = ms_ours
            rows.append((name, t, images.nbytes, buf.nbytes, out_bytes, ms_ours, ms_host))
        del buf
    print(f"stimulus timing: B={B}, (C,H,W)=({C},{H},{W}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU as the device; median of {args.repeats} batches after 3 warm-up; outputs allclose: True")
    print(f"{'schedule':<9}{'T':>4}{'host->dev ours':>16}{'host->dev host':>16}{'stim out':>11}"
          f"{'ours ms':>9}{'host ms':>9}{'host/ours':>10}")
    for name, t, b_ours, b_host, out, m_ours, m_host in rows:
        print(f"{name:<9}{t:>4}{b_ours / 1e6:>13.3f} MB{b_host / 1e6:>13.1f} MB{out / 1e6:>8.1f} MB"
              f"{m_ours:>9.1f}{m_host:>9.1f}{m_host / m_ours:>9.1f}x")
    print(f"\none training step of recurrent_cnn (GRU 64, conv 16/32, Adam), B={B}, median of {args.train_repeats} after 1 warm-up")
    print(f"{'T':>4}{'fill ms':>9}{'step ms':>10}" + "".join(f"{name + ' %':>13}" for name in SCHEDULES))
    for t in STEPS:
        fill = median_ms(lambda: torch.empty(B, t, C, H, W).fill_(0.0), args.repeats)
        batch = ours(SCHEDULES["duration"](t), norm, images, labels)
        step = train_step_ms(t, batch, args.train_repeats)
        print(f"{t:>4}{fill:>9.1f}{step:>10.0f}" + "".join(f"{100 * ours_ms[name, t] / step:>12.2f}%" for name in SCHEDULES))
    at100 = [r for r in rows if r[1] == 100]
    worst = min(r[6] / r[5] for r in at100)
    print(f"\nhost->device bytes independent of T (ours): {len({r[2] for r in rows}) == 1}; "
          f"slowest ratio at T=100: {worst:.1f}x (target >= 10x: {'met' if worst >= 10 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
