"""What a command prints: Lightning's and torch's messages a user cannot act on are filtered
out while a console script runs (installed by :func:`core.cli.cli`, removed when it returns;
importing this module changes nothing). The model summary with parameter counts only is
the ``model_summary`` callback (``plugins/callbacks/terminal.py``).

Filtered (each is matched against the start of the message):

- the accelerator banners: ``GPU available: ...``, ``TPU available: ...``, ``HPU available:
  ...`` and ``LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: [0]``;
- Lightning's tips (``💡 Tip: For seamless cloud logging ...``: litlogger, litmodels);
- torch's ``FutureWarning`` that ``isinstance(treespec, LeafSpec)`` is deprecated (raised by
  Lightning's own ``_pytree`` helper);
- ``The 'train_dataloader' does not have many workers ...``: a core-train batch is gathered
  whole from tensors in memory, so loader workers would not make it faster;
- ``The number of training batches (4) is smaller than the logging interval ...``: the
  per-epoch means are logged at every epoch's end whatever the interval;
- the notes on what core-train itself arranged: ``Loading `train_dataloader` to estimate number
  of stepping batches``, ``Trainer already configured with model summary callbacks``,
  ```Trainer.fit` stopped: `max_epochs=N` reached`` (the normal end), and the restore of
  ``best.ckpt`` for testing (the final summary says which epoch was tested).

Kept: every other warning, e.g. ``GPU available but not used`` (set ``trainer.accelerator``),
and ``Restored all states from the checkpoint at .../last.ckpt`` (``--resume``).
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

# Lightning's rank_zero_info/_warn log through these loggers (a filter on a logger sees only
# the records created on it, so each emitting logger gets the filter)
LIGHTNING_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning_utilities.core.rank_zero",
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
    "lightning.pytorch.accelerators.cuda",
    "pytorch_lightning.accelerators.cuda",
)

LOG_LINES = tuple(re.compile(p) for p in (
    r"(GPU|TPU|HPU|IPU) available: ",
    r"LOCAL_RANK: \d+ - CUDA_VISIBLE_DEVICES: ",
    r"💡 Tip: ",
    r"Loading `train_dataloader` to estimate number of stepping batches",
    r"Trainer already configured with model summary callbacks",
    r"`Trainer\.fit` stopped: `max_epochs=\d+` reached",
    r"(Restoring states from the checkpoint path|Loaded model weights from the checkpoint) at .*best(-\d+)?\.ckpt$",
))

# (message regex matched at the message's start, category); the categories are builtin so that
# installing the filters imports neither torch nor Lightning
WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
    (r"The '\w+' does not have many workers", UserWarning),
    (r"The number of training batches \(\d+\) is smaller than the logging interval", UserWarning),
)


class DropLines(logging.Filter):
    """Drops the log records whose message starts with one of ``LOG_LINES``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(pattern.match(message) for pattern in LOG_LINES)


_started: float | None = None


def elapsed() -> float | None:
    """Seconds since the running console script started (None outside one)."""
    return None if _started is None else time.perf_counter() - _started


@contextmanager
def quiet_terminal() -> Iterator[None]:
    """Install the filters (and start the command's clock) until the block ends; afterwards
    the loggers and ``warnings.filters`` are as before, filters added meanwhile by others kept."""
    global _started
    saved_start, _started = _started, time.perf_counter()
    drop = DropLines()
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    for logger in loggers:
        logger.addFilter(drop)
    before = list(warnings.filters)
    for message, category in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    ours = [f for f in warnings.filters if f not in before]
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop)
        for item in ours:
            if item in warnings.filters:
                warnings.filters.remove(item)
        mutated = getattr(warnings, "_filters_mutated", None)  # what filterwarnings calls: drops cached decisions
        if mutated is not None:
            mutated()
        _started = saved_start
