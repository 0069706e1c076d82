"""Callback ``heartbeat``: one timestamped line per Lightning hook, to find where a job hangs."""

from __future__ import annotations

import logging
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from lightning.pytorch.callbacks import Callback

log = logging.getLogger("core")

# the hooks of a batch (and of its optimiser step): limited by every_n_batches
_STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad")
HOOKS = tuple(sorted(name for name in vars(Callback) if name.startswith("on_") or name in ("setup", "teardown")))


class Heartbeat(Callback):
    """Writes ``heartbeat <time> +<seconds since the last line> rank <r> <hook> epoch <e> step <s>
    [batch <i>]`` when each Lightning hook starts: the last line of a hung job names the hook it
    hangs after. Lines go to ``file`` (appended and flushed line by line; a relative path is
    inside the run directory) or, without it, to the ``core`` logger (stderr in ``core-train``).
    ``every_n_batches``: the hooks of a batch (start, backward, optimizer step, end) only every
    n-th batch. Reads only Python integers from the trainer: no tensor, no host wait.

    ``file``: the file the lines are appended to (a relative path is inside the run
    directory); without it, the ``core`` logger."""

    def __init__(self, file: str | None = None, every_n_batches: int = 1) -> None:
        if every_n_batches < 1:
            raise ValueError(f"every_n_batches must be >= 1, not {every_n_batches}")
        self.file = file
        self.every_n_batches = every_n_batches
        self._out: TextIO | None = None
        self._last = time.monotonic()
        self._batch = 0

    def _beat(self, hook: str, trainer: Any, args: tuple[Any, ...]) -> None:
        batch: int | None = None
        if "_batch_" in hook:
            batch = args[2 if hook.endswith("_end") else 1] if len(args) > 1 else None
            if hook.startswith("on_train_") and isinstance(batch, int):
                self._batch = batch
        elif hook in _STEP_HOOKS:
            batch = self._batch
        if isinstance(batch, int) and batch % self.every_n_batches:
            return
        now = time.monotonic()
        line = (f"heartbeat {datetime.now().isoformat(timespec='milliseconds')} +{now - self._last:.3f}s "
                f"rank {trainer.global_rank} {hook} epoch {trainer.current_epoch} step {trainer.global_step}")
        self._last = now
        if batch is not None:
            line += f" batch {batch}"
        if hook in ("setup", "teardown") and args:
            line += f" stage {getattr(args[0], 'value', args[0])}"
        if hook == "on_exception" and args:
            line += f" {type(args[0]).__name__}: {args[0]}"
        self._write(line, trainer)
        if hook == "teardown" and self._out is not None:
            self._out.close()
            self._out = None

    def _write(self, line: str, trainer: Any) -> None:
        if self.file is None:
            if log.isEnabledFor(logging.INFO) and log.hasHandlers():
                log.info(line)
            else:  # nobody configured logging (a notebook): stderr still gets it
                print(line, file=sys.stderr, flush=True)
            return
        if self._out is None:
            path = Path(self.file)
            if not path.is_absolute():
                path = Path(trainer.default_root_dir) / path
            path.parent.mkdir(parents=True, exist_ok=True)
            self._out = open(path, "a", buffering=1)  # noqa: SIM115 (kept open across hooks, closed at teardown)
        self._out.write(line + "\n")
        self._out.flush()

    def __getstate__(self) -> dict[str, Any]:  # picklable (spawned processes) without the open file
        return {**self.__dict__, "_out": None}


def _hook(name: str) -> Any:
    def hook(self: Heartbeat, trainer: Any, pl_module: Any, *args: Any, **kwargs: Any) -> None:
        self._beat(name, trainer, args or tuple(kwargs.values()))

    hook.__name__ = hook.__qualname__ = name
    return hook


for _name in HOOKS:
    setattr(Heartbeat, _name, _hook(_name))

