"""What a run shows on the terminal, callbacks on by default: ``progress_bar`` (the training
loss, read at the logging interval only), ``epoch_summary`` (a line per epoch) and
``model_summary`` (parameter counts).

Lightning's own bars read every ``prog_bar`` metric to the host after every batch, which
makes the host wait for the accelerator once per step. This bar shows ``loss`` (the last
logged ``train/loss``) and reads it when Lightning logs (every ``log_every_n_steps``) and
at the end of each epoch.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import Callback, RichModelSummary, RichProgressBar

from core.module import logging_now


class IntervalProgressBar(RichProgressBar):
    """Lightning's rich progress bar showing ``loss``, read when Lightning logs."""

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


class EpochSummary(Callback):
    """One line per epoch beside the progress bar: the epoch's losses and evaluation metrics
    (per dataset for response models), e.g. ``epoch 3 | train/loss 0.41 | val/corr 0.31 | ...``;
    an epoch that skipped validation (``trainer.check_val_every_n_epoch``) shows no val values."""

    validated: int | None = None  # the last epoch that ran validation

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self.validated = trainer.current_epoch

    # at the train epoch's end: after the epoch's validation (whose epoch-end metrics the module
    # logs after the callbacks' on_validation_epoch_end) and the train metrics' aggregation
    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        # the module logs its training means after the callbacks' on_train_epoch_end: take them from it
        means = pl_module.train_means.means() if hasattr(pl_module, "train_means") else {}
        metrics = {**trainer.callback_metrics, **means}
        stages = ("val/",) if self.validated == trainer.current_epoch else ()
        keys = sorted(k for k in metrics if (k.startswith(stages) or k == "train/loss_epoch") and "_step" not in k)
        line = " | ".join([f"epoch {trainer.current_epoch}"] + [f"{k.replace('_epoch', '')} {float(metrics[k]):.4g}"
                                                               for k in keys])
        bar = trainer.progress_bar_callback
        (bar.print if bar is not None and hasattr(bar, "print") else print)(line)


class ParameterSummary(RichModelSummary):
    """Lightning's model summary with the parameter columns and totals only (no mode, FLOPs,
    size or module counts); on while
    ``trainer.enable_model_summary`` is true (in place of Lightning's default summary).
    ``max_depth``: the levels of nested modules the table lists (1: the model's children; -1: all; 0: no table)."""

    COLUMNS = (" ", "Name", "Type", "Params", "Params per Device")

    def __init__(self, max_depth: int = 1) -> None:
        super().__init__(max_depth=max_depth)

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                  model_size: float, total_training_modes: dict[str, int], total_flops: int, **kwargs: Any) -> None:
        from lightning.pytorch.utilities.model_summary.model_summary import get_human_readable_count
        from rich import get_console
        from rich.table import Table

        columns = [(name, values) for name, values in summary_data if name in ParameterSummary.COLUMNS]
        table = Table(header_style="bold magenta")
        for name, _ in columns:
            table.add_column(name, justify="right" if name.startswith("Params") else "left", no_wrap=name == "Name",
                             style="dim" if name == " " else None)
        for row in zip(*(values for _, values in columns)):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        counts = [get_human_readable_count(int(n)).strip() for n in
                  (total_parameters, trainable_parameters, total_parameters - trainable_parameters)]
        console.print(f"parameters: {counts[0]} total, {counts[1]} trainable, {counts[2]} non-trainable",
                      highlight=False)
