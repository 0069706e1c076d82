"""The progress bar of every run: the training loss, read at the logging interval only.

Lightning's own bars read every ``prog_bar`` metric to the host after every batch, which
makes the host wait for the accelerator once per step. This bar shows ``loss`` (the last
logged ``train/loss``) and reads it when Lightning logs (every ``log_every_n_steps``) and
at the end of each epoch.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import RichProgressBar

from core.module import logging_now


class IntervalProgressBar(RichProgressBar):
    def __init__(self) -> None:
        super().__init__()
        self._shown: dict[str, Any] = {}
        self._due = True

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._due = logging_now(trainer)
        try:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        finally:
            self._due = True

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        if self._due:
            loss = trainer.callback_metrics.get("train/loss_step")
            self._shown = {} if loss is None else {"loss": round(float(loss), 4)}
        return dict(self._shown)
