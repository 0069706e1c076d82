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


class SamplerClock(Callback):
    """Tells each dataset's sampler the global step before every training batch (a curriculum's clock)."""

    def __init__(self, samplers: list[Any]) -> None:
        self.samplers = samplers

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        # after a checkpoint is restored and before the first epoch draws its indices: a resumed
        # run's curriculum continues where it stopped instead of drawing one epoch at step 0
        self._tell(trainer.global_step)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._tell(trainer.global_step)

    def _tell(self, step: int) -> None:
        for sampler in self.samplers:
            sampler.set_step(step)


class EpochSummary(Callback):
    """One line per epoch beside the progress bar: the epoch's losses and evaluation metrics
    (per dataset for response models), e.g. ``epoch 3 | train/loss 0.41 | val/corr 0.31 | ...``."""

    # at the train epoch's end: after the epoch's validation (whose epoch-end metrics the module
    # logs after the callbacks' on_validation_epoch_end) and the train metrics' aggregation
    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        # the module logs its training means after the callbacks' on_train_epoch_end: take them from it
        means = pl_module.train_means.means() if hasattr(pl_module, "train_means") else {}
        metrics = {**trainer.callback_metrics, **means}
        keys = sorted(k for k in metrics if (k.startswith("val/") or k == "train/loss_epoch") and "_step" not in k)
        line = " | ".join([f"epoch {trainer.current_epoch}"] + [f"{k.replace('_epoch', '')} {float(metrics[k]):.4g}"
                                                               for k in keys])
        bar = trainer.progress_bar_callback
        (bar.print if bar is not None and hasattr(bar, "print") else print)(line)
