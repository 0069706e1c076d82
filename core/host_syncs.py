"""Counting host synchronisations, for tests and benchmarks (re-exported by :mod:`core.testing`).

:class:`HostSyncs` counts the operations that make the host wait for the accelerator (a
"host synchronisation"): reading a value (``.item()``, ``bool(t)``, ``float(t)``,
``.tolist()``), ops whose output shape depends on the data (``nonzero``, ``unique``,
``masked_select``, boolean-mask indexing, ``repeat_interleave`` without ``output_size``)
and ``torch.equal``. Each of them drains the GPU's queue when it runs on CUDA; on the CPU
nothing waits, but the same ops run through the same dispatcher, so the count made on the
CPU is the count a GPU run would pay. A device-side transform, a module's step or a
metric is held to zero::

    with HostSyncs() as syncs:
        transform(batch)
    assert syncs.total == 0, syncs.counts

:func:`count_training_syncs` counts over every training batch of a real run (the fetch of
the batch, its move and finish, the step, the callbacks and the logging), not over
validation, and gives the count per training step.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# ops whose output shape (or value on the host) depends on the data: the host must wait
_DATA_DEPENDENT = {
    aten._local_scalar_dense.default: "item",  # .item(), bool(t), float(t), int(t), if t: ...
    aten.nonzero.default: "nonzero",
    aten.nonzero.out: "nonzero",
    aten.masked_select.default: "masked_select",
    aten.equal.default: "equal",
    aten.repeat_interleave.Tensor: "repeat_interleave",
}
_UNIQUE = ("unique", "_unique")
_INDEXING = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default}


def _sync_name(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    name = _DATA_DEPENDENT.get(func)
    if name is not None:
        if func is aten.repeat_interleave.Tensor and kwargs.get("output_size") is not None:
            return None
        return name
    if func.__name__.split(".")[0].startswith(_UNIQUE):
        return "unique"
    if func in _INDEXING and len(args) > 1:
        indices = args[1] or ()
        if any(torch.is_tensor(i) and i.dtype in (torch.bool, torch.uint8) for i in indices):
            return "boolean mask indexing"
    return None


class _ToList(TorchFunctionMode):
    """``Tensor.tolist`` reads the data directly (no dispatcher op on the CPU): seen here."""

    def __init__(self, counts: Counter[str], active: list[bool]) -> None:
        super().__init__()
        self.counts, self.active = counts, active

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        if func is torch.Tensor.tolist and self.active[0]:
            self.counts["tolist"] += 1
        return func(*args, **(kwargs or {}))


class HostSyncs(TorchDispatchMode):
    """Counts host synchronisations by kind (``counts``); ``total`` is their sum."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self._active = [True]
        self._tolist = _ToList(self.counts, self._active)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __enter__(self) -> HostSyncs:
        self._tolist.__enter__()
        super().__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        self._tolist.__exit__(*exc)

    @contextlib.contextmanager
    def counting(self, on: bool) -> Iterator[None]:
        """Count inside this block (``on``) or not (``not on``), whatever was the case around it."""
        before = self._active[0]
        self._active[0] = on
        try:
            yield
        finally:
            self._active[0] = before

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if self._active[0]:
            name = _sync_name(func, args, kwargs)
            if name is not None:
                self.counts[name] += 1
        return func(*args, **kwargs)


@dataclass
class TrainingSyncs:
    """Host synchronisations over the training batches of a run: ``counts`` by kind, ``steps`` batches."""

    counts: Counter[str] = field(default_factory=Counter)
    steps: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def per_step(self) -> float:
        return self.total / max(self.steps, 1)


@contextlib.contextmanager
def count_training_syncs() -> Iterator[TrainingSyncs]:
    """Count host synchronisations in every Lightning training batch run inside this block.

    One training batch is Lightning's ``_TrainingEpochLoop.advance``: fetching the batch,
    moving and finishing it (``on_after_batch_transfer``), the step and optimizer, the
    batch-end callbacks (progress bar included) and the step's logging. Validation, test
    and the epoch-end work are not counted, nor is ``torch.optim``'s own update (the
    closure it calls, the training step and backward, is): torch keeps its optimizers' step
    counters on the host on purpose (their ``.item()`` reads host memory; a GPU run does not
    wait there)."""
    from lightning.pytorch.loops.optimization.automatic import Closure
    from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop

    result = TrainingSyncs()
    original = _TrainingEpochLoop.advance
    mode = HostSyncs()

    def advance(loop: _TrainingEpochLoop, *args: Any, **kwargs: Any) -> None:
        result.steps += 1
        with mode.counting(True):
            return original(loop, *args, **kwargs)

    paused: list[contextlib.AbstractContextManager[None]] = []

    def optimizer_starts(*_: Any) -> None:
        paused.append(mode.counting(False))
        paused[-1].__enter__()

    def optimizer_ends(*_: Any) -> None:
        paused.pop().__exit__(None, None, None)

    def closure(self: Closure, *args: Any, **kwargs: Any) -> Any:
        with mode.counting(True):  # Lightning's closure (the training step and backward) runs inside step()
            return step_and_backward(self, *args, **kwargs)

    step_and_backward = Closure.__call__
    _TrainingEpochLoop.advance = advance  # type: ignore[method-assign]
    Closure.__call__ = closure  # type: ignore[method-assign]
    hooks = [register_optimizer_step_pre_hook(optimizer_starts), register_optimizer_step_post_hook(optimizer_ends)]
    try:
        with mode, mode.counting(False):
            yield result
    finally:
        _TrainingEpochLoop.advance = original  # type: ignore[method-assign]
        Closure.__call__ = step_and_backward  # type: ignore[method-assign]
        for hook in hooks:
            hook.remove()
        result.counts.update(mode.counts)
