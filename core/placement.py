"""Where a run's stored samples live during training: host RAM or accelerator memory.

``data.placement``:

- ``host``: the stored tensors stay in RAM; each batch is gathered there, pinned and
  copied to the accelerator ahead of the step that needs it (see :mod:`core.prefetch`).
- ``device``: the stored tensors move to the accelerator once; batches are gathered there.
- ``auto`` (the default): ``device`` when the samples held in memory take at most
  ``DEVICE_SHARE`` of the accelerator's free memory (the rest is left to the model, its
  activations and the optimizer), else ``host``. Always ``host`` without a CUDA
  accelerator, with DataLoader workers (they gather on the host), and for data read from
  disk per batch (nothing is held).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.memory import human

DEVICE_SHARE = 0.5


@dataclass(frozen=True)
class Placement:
    where: str  # "host" or "device"
    reason: str


def accelerator_free(trainer: dict[str, Any]) -> int | None:
    """Free bytes of the CUDA accelerator the run trains on (the least over the visible
    devices: under DDP each rank holds a copy on its own), or None without one."""
    if str(trainer.get("accelerator", "auto")) not in ("auto", "gpu", "cuda"):
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    return min(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))


def choose_placement(configured: str, num_workers: int, held: int, free: int | None) -> Placement:
    """``configured`` as given, or for ``auto`` the choice and why; ``held``: bytes the run
    keeps in memory, ``free``: the accelerator's free bytes (None: no accelerator)."""
    if configured != "auto":
        return Placement(configured, f"data.placement: {configured}")
    if free is None:
        return Placement("host", "auto: no CUDA accelerator, the samples stay in RAM")
    if num_workers:
        return Placement("host", f"auto: data.num_workers {num_workers} gathers batches in worker processes on the host")
    if held == 0:
        return Placement("host", "auto: the samples are read from disk batch by batch, nothing is held")
    if held > DEVICE_SHARE * free:
        return Placement("host", f"auto: the {human(held)} held would take more than {DEVICE_SHARE:.0%} of the "
                                 f"accelerator's {human(free)} free; batches are prefetched to it")
    return Placement("device", f"auto: the {human(held)} held fit in {DEVICE_SHARE:.0%} of the accelerator's "
                               f"{human(free)} free")
