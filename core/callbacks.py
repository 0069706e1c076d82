"""Lightning callbacks of every run."""

from __future__ import annotations

import sys
from typing import Any

from lightning.pytorch.callbacks import Callback


class ResumeHint(Callback):
    """Lightning turns Ctrl-C into a graceful stop (exit 1); tell the user how to continue."""

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt) and trainer.is_global_zero:
            print("interrupted; continue the run with --resume (from checkpoints/last.ckpt)", file=sys.stderr)
